// Preloaded (`node --import`) into the real CIBA OP for the ping-mode test only.
//
// oidc-provider delivers pings only to https endpoints on public addresses (it refuses
// special-use IPs, loopback included, against SSRF), and the test's notification endpoint is
// plain http on 127.0.0.1. This wraps fetch so that a ping to https://127.0.0.1 goes to
// http://127.0.0.1 without the SSRF-checking dispatcher. Nothing else changes: when the OP
// pings, with which bearer token and body, is still oidc-provider's own code.
const realFetch = globalThis.fetch;
globalThis.fetch = (url, options = {}) => {
  const target = new URL(url);
  if (target.protocol === 'https:' && target.hostname === '127.0.0.1') {
    target.protocol = 'http:';
    const { dispatcher: _checked, ...rest } = options;
    return realFetch(target.href, rest);
  }
  return realFetch(url, options);
};
