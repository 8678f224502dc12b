// The official OpenFGA JavaScript SDK (@openfga/sdk), and the `fga` CLI as a client, against
// Airlock's OpenFGA API. Usage: node openfga_peer.mjs URL OPERATOR_TOKEN FGA_CLI
// The operator creates the store (a tenant); a member of it, invited through Airlock's API,
// works inside it. Prints one line per step; exits non-zero, naming the step, on the first
// disagreement.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';

// The packages live where scripts/node-peers.sh installed them (AIRLOCK_NODE_PEERS).
const require = createRequire(join(process.env.AIRLOCK_NODE_PEERS, 'package.json'));
const { CredentialsMethod, OpenFgaClient } = require('@openfga/sdk');

const [url, operatorToken, fga] = process.argv.slice(2);

function expect(step, got, want) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) {
    console.log(`FAIL ${step}: got ${g}, want ${w}`);
    process.exit(1);
  }
  console.log(`ok   ${step}`);
}

const client = (token, storeId) => new OpenFgaClient({
  apiUrl: url,
  storeId,
  credentials: { method: CredentialsMethod.ApiToken, config: { token } },
});

const MODEL = {
  schema_version: '1.1',
  type_definitions: [
    { type: 'user' },
    { type: 'group', relations: { member: { this: {} } },
      metadata: { relations: { member: { directly_related_user_types: [{ type: 'user' }] } } } },
    { type: 'document',
      relations: {
        owner: { this: {} },
        viewer: { union: { child: [{ this: {} }, { computedUserset: { relation: 'owner' } }] } },
      },
      metadata: { relations: {
        owner: { directly_related_user_types: [{ type: 'user' }] },
        viewer: { directly_related_user_types: [{ type: 'user' }, { type: 'group', relation: 'member' }] },
      } } },
  ],
};

const store = await client(operatorToken).createStore({ name: 'js sdk conformance' });
expect('create store returns its name', store.name, 'js sdk conformance');

const post = async (path, body, bearer) => {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const resp = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return [resp.status, await resp.json()];
};
const [invited, invitation] = await post(`/v1/tenants/${store.id}/invitations`, { member: 'user:js', role: 'admin' }, operatorToken);
expect('operator invites a store admin', invited, 201);
const [accepted, member] = await post('/v1/invitations/accept', { code: invitation.invitation.code });
expect('invitation redeemed', accepted, 200);

const fgaClient = client(member.token, store.id);
const written = await fgaClient.writeAuthorizationModel(MODEL);
expect('model written', typeof written.authorization_model_id, 'string');
const read = await fgaClient.readAuthorizationModel({ authorizationModelId: written.authorization_model_id });
expect('model reads back', read.authorization_model.type_definitions.map((t) => t.type).sort(), ['document', 'group', 'user']);

await fgaClient.write({ writes: [
  { user: 'user:anne', relation: 'owner', object: 'document:roadmap' },
  { user: 'group:eng#member', relation: 'viewer', object: 'document:plan' },
  { user: 'user:bob', relation: 'member', object: 'group:eng' },
] }, { authorizationModelId: written.authorization_model_id });
const check = async (user, object) => (await fgaClient.check({ user, relation: 'viewer', object })).allowed;
expect('owner is viewer', await check('user:anne', 'document:roadmap'), true);
expect('group member is viewer', await check('user:bob', 'document:plan'), true);
expect('stranger is not', await check('user:dave', 'document:roadmap'), false);
const objects = await fgaClient.listObjects({ user: 'user:bob', relation: 'viewer', type: 'document' });
expect('list objects', objects.objects, ['document:plan']);
const tuples = await fgaClient.read({ object: 'document:roadmap' });
expect('read tuples', tuples.tuples.map((t) => t.key.user), ['user:anne']);

// The `fga` CLI (the OpenFGA project's own) as a client of the same store.
const cli = (...args) => JSON.parse(execFileSync(fga, [...args, '--api-url', url, '--api-token', member.token,
  '--store-id', store.id], { encoding: 'utf8' }));
cli('tuple', 'write', 'user:carl', 'owner', 'document:plan');
expect('fga query check', cli('query', 'check', 'user:carl', 'viewer', 'document:plan').allowed, true);
expect('fga query check (no)', cli('query', 'check', 'user:carl', 'viewer', 'document:roadmap').allowed, false);
expect('fga query list-objects', cli('query', 'list-objects', 'user:anne', 'viewer', 'document').objects, ['document:roadmap']);
expect('the SDK sees what the CLI wrote', await check('user:carl', 'document:plan'), true);
console.log('openfga-js: all steps passed');
