// The console speaks the API's own shapes: every JSON body a console page sends to `/v1` is
// checked against the request schema the host's OpenAPI document gives that route (the
// schema is derived from the very Rust type the handler reads, src/api/openapi/shapes.rs),
// and every JSON answer it gets against the response type the route declares.
// A body with a field the type does not have (where the type refuses unknown fields), a
// missing required field, a wrong type, or a body sent to a route that reads none is a
// violation, and the scenario fails (lib.mjs `run`).
//
// The validator covers what schemars writes for the API's types: $ref, type (one or a list),
// properties, required, additionalProperties, items, enum, const, anyOf, oneOf, allOf.

const documents = new Map(); // origin -> Promise<OpenAPI document>
const violations = [];
const pending = [];
let checked = 0;
let answers = 0;

// Watches `page`'s requests and the answers it gets; call once per page (lib.mjs newPage does).
export function watchShapes(page) {
  page.on('request', (request) => {
    pending.push(check(request).catch((e) => violations.push(`${request.method()} ${request.url()}: ${e.message}`)));
  });
  page.on('response', (response) => {
    pending.push(checkAnswer(response).catch((e) => violations.push(`answer to ${response.url()}: ${e.message}`)));
  });
}

// A success answer fits the response type its route declares.
async function checkAnswer(response) {
  const url = new URL(response.url());
  if (!url.pathname.startsWith('/v1/') || response.status() < 200 || response.status() >= 300) return;
  if (!(response.headers()['content-type'] || '').startsWith('application/json')) return;
  const doc = await documentOf(url.origin);
  const op = operationFor(doc, response.request().method().toLowerCase(), url.pathname);
  const schema = op?.responses?.['2XX']?.content?.['application/json']?.schema;
  if (!schema || !(schema.$ref || schema.properties)) return;
  let body;
  try {
    body = await response.json();
  } catch {
    return; // the page went away before its body was read: nothing to check
  }
  const errors = [];
  validate(doc, schema, body, '$', errors);
  answers += 1;
  for (const e of errors) violations.push(`answer to ${response.request().method()} ${url.pathname}: ${e}`);
}

// Waits for the checks in flight; returns { checked, answers, violations }.
export async function shapeReport() {
  await Promise.all(pending);
  return { checked, answers, violations: [...violations] };
}

async function check(request) {
  const url = new URL(request.url());
  const body = request.postData();
  if (!url.pathname.startsWith('/v1/') || body === null || body === '') return;
  if (!(request.headers()['content-type'] || '').startsWith('application/json')) return;
  const doc = await documentOf(url.origin);
  const method = request.method().toLowerCase();
  const op = operationFor(doc, method, url.pathname);
  const what = `${request.method()} ${url.pathname}`;
  if (!op) {
    violations.push(`${what}: no such route in the OpenAPI document`);
    return;
  }
  const schema = op.requestBody?.content?.['application/json']?.schema;
  if (!schema) {
    violations.push(`${what}: sends a JSON body (${body.slice(0, 120)}) to a route that reads none`);
    return;
  }
  let value;
  try {
    value = JSON.parse(body);
  } catch (e) {
    violations.push(`${what}: the body is not JSON: ${e.message}`);
    return;
  }
  const errors = [];
  validate(doc, schema, value, '$', errors);
  checked += 1;
  for (const e of errors) violations.push(`${what}: ${e}`);
}

function documentOf(origin) {
  if (!documents.has(origin)) {
    documents.set(origin, fetch(`${origin}/v1/openapi.json`).then((r) => {
      if (!r.ok) throw new Error(`GET /v1/openapi.json: HTTP ${r.status}`);
      return r.json();
    }));
  }
  return documents.get(origin);
}

// The operation whose path template matches `path` (`/v1/approvals/{id}/decision`).
function operationFor(doc, method, path) {
  for (const [template, ops] of Object.entries(doc.paths)) {
    const pattern = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (pattern.test(path) && ops[method]) return ops[method];
  }
  return null;
}

function resolve(doc, schema) {
  while (schema && typeof schema === 'object' && schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = doc.components.schemas[name];
    if (!target) throw new Error(`unresolved ${schema.$ref}`);
    schema = target;
  }
  return schema;
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v; // string, boolean, object
}

function fits(type, v) {
  const t = typeOf(v);
  return t === type || (type === 'number' && t === 'integer');
}

// Appends to `errors` what is wrong with `v` under `schema` at `at`.
export function validate(doc, schema, v, at, errors) {
  schema = resolve(doc, schema);
  if (schema === true || schema === undefined) return;
  if (schema === false) {
    errors.push(`${at}: not allowed`);
    return;
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => fits(t, v))) {
      errors.push(`${at}: ${JSON.stringify(v)} is not ${types.join(' or ')}`);
      return;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) {
    errors.push(`${at}: ${JSON.stringify(v)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(v)) {
    errors.push(`${at}: ${JSON.stringify(v)} is not ${JSON.stringify(schema.const)}`);
  }
  for (const sub of schema.allOf || []) validate(doc, sub, v, at, errors);
  for (const [key, exactlyOne] of [['anyOf', false], ['oneOf', true]]) {
    if (!schema[key]) continue;
    const fitting = schema[key].filter((sub) => {
      const e = [];
      validate(doc, sub, v, at, e);
      return e.length === 0;
    }).length;
    if (fitting === 0 || (exactlyOne && fitting > 1)) {
      errors.push(`${at}: ${JSON.stringify(v)} fits ${fitting} of the ${key} alternatives`);
    }
  }
  if (typeOf(v) === 'object') {
    const props = schema.properties || {};
    for (const name of schema.required || []) {
      if (!(name in v)) errors.push(`${at}: the required field \`${name}\` is missing`);
    }
    for (const [name, value] of Object.entries(v)) {
      if (name in props) validate(doc, props[name], value, `${at}.${name}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${at}: unknown field \`${name}\``);
      else if (typeof schema.additionalProperties === 'object') {
        validate(doc, schema.additionalProperties, value, `${at}.${name}`, errors);
      }
    }
  }
  if (typeOf(v) === 'array' && schema.items) {
    v.forEach((item, i) => validate(doc, schema.items, item, `${at}[${i}]`, errors));
  }
}
