// The official TypeScript MCP SDK (@modelcontextprotocol/sdk) as an agent, over Streamable HTTP.
// Usage: node mcp_peer.mjs URL AGENT_TOKEN
// The agent may use hello.greet and billing.lookup-customer, and nothing else. Prints one line
// per step and exits non-zero, naming the step, on the first disagreement.
import { createRequire } from 'node:module';
import { join } from 'node:path';

// The packages live where scripts/node-peers.sh installed them (AIRLOCK_NODE_PEERS).
const require = createRequire(join(process.env.AIRLOCK_NODE_PEERS, 'package.json'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

const [url, token] = process.argv.slice(2);

function expect(step, got, want) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) {
    console.log(`FAIL ${step}: got ${g}, want ${w}`);
    process.exit(1);
  }
  console.log(`ok   ${step}`);
}

async function connect(bearer) {
  const client = new Client({ name: 'airlock-ts-peer', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
  });
  await client.connect(transport);
  return client;
}

// A bad token is refused before MCP: the SDK reports the 401.
try {
  await connect('not-a-token');
  expect('a bad token is refused', 'connected', 'refused');
} catch (e) {
  // The SDK keeps the status and the host's reason.
  expect('a bad token is refused', [e.code, /unknown or revoked agent token/.test(String(e))], [401, true]);
}

const client = await connect(token);
expect('server names itself', client.getServerVersion()?.name.startsWith('airlock') ?? false, true);

const { tools } = await client.listTools();
expect('lists exactly the granted tools', tools.map((t) => t.name).sort(), ['billing.lookup-customer', 'hello.greet']);
const greet = tools.find((t) => t.name === 'hello.greet');
expect('greet has an input schema', greet.inputSchema.type, 'object');
expect('greet is read-only and stays inside', [greet.annotations?.readOnlyHint, greet.annotations?.openWorldHint], [true, false]);
const lookup = tools.find((t) => t.name === 'billing.lookup-customer');
expect('lookup reaches outside, destroys nothing', [lookup.annotations?.openWorldHint, lookup.annotations?.destructiveHint], [true, false]);

const result = await client.callTool({ name: 'hello.greet', arguments: { name: 'typescript' } });
expect('call succeeds', result.isError ?? false, false);
expect('call answers', JSON.parse(result.content[0].text).greeting, 'hello, typescript');

const denied = await client.callTool({ name: 'billing.refund', arguments: { customer_id: '42', amount: '1.00', currency: 'EUR' } });
expect('an ungranted tool is a tool error', denied.isError, true);
expect('the error says why', /may not use/.test(denied.content[0].text), true);

await client.close();
console.log('mcp-ts: all steps passed');
