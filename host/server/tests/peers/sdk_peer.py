"""Drives Airlock's OpenFGA API with the official Python SDK (PyPI `openfga-sdk`).

Usage: python sdk_peer.py API_URL OPERATOR_TOKEN FGA_CLI
The model is turned from DSL into JSON by the real `fga model transform`, not by Airlock.
The operator creates the store (a tenant); a member of it, invited through Airlock's API,
works inside it: an operator token acts in no tenant.
Exits non-zero, naming the step, on the first disagreement.
"""

import asyncio
import json
import subprocess
import sys
import tempfile
import urllib.request

from openfga_sdk import ClientConfiguration, OpenFgaClient
from openfga_sdk.client.models import (
    ClientBatchCheckItem,
    ClientBatchCheckRequest,
    ClientCheckRequest,
    ClientExpandRequest,
    ClientListObjectsRequest,
    ClientTuple,
    ClientWriteRequest,
)
from openfga_sdk.client.models.list_users_request import ClientListUsersRequest
from openfga_sdk.client.models.read_changes_request import ClientReadChangesRequest
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.models.create_store_request import CreateStoreRequest
from openfga_sdk.models.fga_object import FgaObject
from openfga_sdk.models.read_request_tuple_key import ReadRequestTupleKey
from openfga_sdk.models.user_type_filter import UserTypeFilter

MODEL = """model
  schema 1.1
type user
type group
  relations
    define member: [user]
type document
  relations
    define owner: [user]
    define blocked: [user]
    define viewer: ([user, group#member] or owner) but not blocked
"""


def expect(step, got, want):
    if got != want:
        print(f"FAIL {step}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   {step}")


async def main(url, token, fga):
    with tempfile.NamedTemporaryFile("w", suffix=".fga") as f:
        f.write(MODEL)
        f.flush()
        model_json = json.loads(subprocess.run([fga, "model", "transform", "--file", f.name], check=True, capture_output=True, text=True).stdout)

    def config(tok):
        return ClientConfiguration(
            api_url=url,
            credentials=Credentials(method="api_token", configuration=CredentialConfiguration(api_token=tok)),
        )

    async with OpenFgaClient(config(token)) as operator:
        store = await operator.create_store(CreateStoreRequest(name="sdk conformance"))
        expect("create store returns its name", store.name, "sdk conformance")
        operator.set_store_id(store.id)
        try:
            await operator.read_authorization_models()
            expect("the operator acts in no store", "accepted", "refused")
        except Exception as e:
            expect("the operator acts in no store", "403" in str(e) or "Forbidden" in str(e), True)

    def post(path, body, bearer=None):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if bearer:
            req.add_header("Authorization", f"Bearer {bearer}")
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())

    status, invited = post(f"/v1/tenants/{store.id}/invitations", {"member": "user:sdk", "role": "admin"}, token)
    expect("operator invites a store admin", status, 201)
    status, accepted = post("/v1/invitations/accept", {"code": invited["invitation"]["code"]})
    expect("invitation redeemed", status, 200)
    member = accepted["token"]

    async with OpenFgaClient(config(member)) as client:
        client.set_store_id(store.id)

        written = await client.write_authorization_model(model_json)
        client.set_authorization_model_id(written.authorization_model_id)
        read_back = await client.read_authorization_model()
        expect("model reads back", sorted(t.type for t in read_back.authorization_model.type_definitions), ["document", "group", "user"])

        await client.write(
            ClientWriteRequest(
                writes=[
                    ClientTuple(user="user:anne", relation="owner", object="document:roadmap"),
                    ClientTuple(user="group:eng#member", relation="viewer", object="document:roadmap"),
                    ClientTuple(user="user:bob", relation="member", object="group:eng"),
                    ClientTuple(user="user:carl", relation="member", object="group:eng"),
                    ClientTuple(user="user:carl", relation="blocked", object="document:roadmap"),
                ]
            )
        )

        async def check(user, relation="viewer", obj="document:roadmap"):
            r = await client.check(ClientCheckRequest(user=user, relation=relation, object=obj))
            return r.allowed

        expect("owner is viewer", await check("user:anne"), True)
        expect("group member is viewer", await check("user:bob"), True)
        expect("blocked member is not", await check("user:carl"), False)
        expect("stranger is not", await check("user:dave"), False)

        batch = await client.batch_check(
            ClientBatchCheckRequest(
                checks=[
                    ClientBatchCheckItem(user="user:bob", relation="viewer", object="document:roadmap", correlation_id="c1"),
                    ClientBatchCheckItem(user="user:dave", relation="viewer", object="document:roadmap", correlation_id="c2"),
                ]
            )
        )
        expect("batch check", sorted((r.correlation_id, r.allowed) for r in batch.result), [("c1", True), ("c2", False)])

        objects = await client.list_objects(ClientListObjectsRequest(user="user:bob", relation="viewer", type="document"))
        expect("list objects", objects.objects, ["document:roadmap"])

        users = await client.list_users(
            ClientListUsersRequest(
                object=FgaObject(type="document", id="roadmap"),
                relation="viewer",
                user_filters=[UserTypeFilter(type="user")],
            )
        )
        expect("list users", sorted(u.object.id for u in users.users if u.object), ["anne", "bob"])

        read = await client.read(ReadRequestTupleKey(object="document:roadmap", relation="blocked"))
        expect("read with a filter", [(t.key.user, t.key.relation) for t in read.tuples], [("user:carl", "blocked")])

        tree = await client.expand(ClientExpandRequest(relation="viewer", object="document:roadmap"))
        expect("expand names the root", tree.tree.root.name, "document:roadmap#viewer")

        changes = await client.read_changes(ClientReadChangesRequest(type="document"))
        expect("read changes", len(changes.changes), 3)

        try:
            await client.write(ClientWriteRequest(writes=[ClientTuple(user="user:anne", relation="owner", object="document:roadmap")]))
            expect("duplicate write refused", "accepted", "refused")
        except Exception as e:  # the SDK raises its validation exception for 400s
            expect("duplicate write refused", "write_failed_due_to_invalid_input" in str(e) or "400" in str(e), True)

        await client.write(ClientWriteRequest(deletes=[ClientTuple(user="user:bob", relation="member", object="group:eng")]))
        expect("revocation is immediate", await check("user:bob"), False)

        try:
            await client.check(ClientCheckRequest(user="user:anne", relation="nope", object="document:roadmap"))
            expect("unknown relation refused", "accepted", "refused")
        except Exception as e:
            expect("unknown relation refused", "validation_error" in str(e) or "400" in str(e), True)
    print("openfga-sdk: all steps passed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
