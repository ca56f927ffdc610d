// Drives strait's agent with the `consul` npm package (2.x) as its users do. Run by
// tests/compat.rs with NODE_PATH naming where the package is installed.
//
// Environment: AGENT_HOST (the agent's API on port 8500), APP_PORT (a TCP port on AGENT_HOST
// that accepts connections). Exits non-zero on the first thing that is not as Consul's.
"use strict";

const assert = require("node:assert/strict");
const Consul = require("consul");
const utils = require("consul/lib/utils");

const host = process.env.AGENT_HOST;
const app = Number(process.env.APP_PORT);
const consul = new Consul({ host, port: 8500 });

async function eventually(what, f, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// What the package has no method for, through its own request machinery.
const call = (method, path, query, body) =>
  consul[`_${method}`]({ name: `strait${path}`, path, query, ...(body ? { type: "json", body } : {}) }, utils.body);

const passing = () => consul.health.service({ service: "nodeweb", passing: true });

async function main() {
  // A TCP check and a TTL check; a sidecar whose proxy names its service (the package
  // requires DestinationServiceName) and a cross-DC upstream.
  await consul.agent.service.register({
    name: "nodeweb",
    id: "nodeweb",
    address: host,
    port: app,
    tags: ["v1", "node"],
    checks: [
      { tcp: `${host}:${app}`, interval: "1s" },
      { ttl: "30s", notes: "reported by the app" },
    ],
    connect: {
      sidecarService: {
        proxy: {
          destinationServiceName: "nodeweb",
          upstreams: [{ DestinationName: "counting", Datacenter: "dc2", LocalBindPort: 5002 }],
        },
      },
    },
  });

  const services = await consul.agent.service.list();
  assert.deepEqual(services.nodeweb.Tags, ["v1", "node"]);
  const proxy = services["nodeweb-sidecar-proxy"].Proxy;
  assert.equal(proxy.Upstreams[0].DestinationName, "counting");
  assert.equal(proxy.Upstreams[0].Datacenter, "dc2");

  const checks = await consul.agent.check.list();
  assert.equal(checks["service:nodeweb:2"].Status, "critical");
  assert.equal(checks["service:nodeweb:2"].Notes, "reported by the app");
  await eventually("nodeweb in the catalog", async () => (await consul.health.service("nodeweb")).length);
  assert.deepEqual(await passing(), []);

  await consul.agent.check.pass({ id: "service:nodeweb:2", note: "all good" });
  await eventually("nodeweb passing after check.pass", async () => (await passing()).length === 1);

  // Queries: tag, passing, filter; read endpoints.
  assert.equal((await consul.health.service({ service: "nodeweb", tag: "node", passing: true })).length, 1);
  assert.deepEqual(await consul.health.service({ service: "nodeweb", tag: "python" }), []);
  const filtered = await consul.health.service({ service: "nodeweb", filter: 'Service.Port == ' + app + ' and Service.Tags contains "v1"' });
  assert.equal(filtered.length, 1);
  assert.deepEqual(await consul.catalog.service.nodes({ service: "nodeweb", filter: "ServiceTags is empty" }), []);
  await assert.rejects(consul.health.service({ service: "nodeweb", filter: "Service.Port ==" }), (err) => {
    assert.equal(err.response && err.response.statusCode, 400, String(err));
    assert.match(String(err.response.body), /position 16/);
    return true;
  });
  const healthChecks = await consul.health.checks("nodeweb");
  assert.deepEqual(healthChecks.map((c) => c.CheckID).sort(), ["service:nodeweb:1", "service:nodeweb:2"]);
  const states = await consul.health.state("passing");
  assert.ok(states.some((c) => c.CheckID === "service:nodeweb:2"), JSON.stringify(states));
  assert.deepEqual(await consul.catalog.datacenters(), ["dc1"]);
  await consul.agent.check.fail({ id: "service:nodeweb:2", note: "broken" });
  await eventually("nodeweb not passing after check.fail", async () => (await passing()).length === 0);

  // Connect: roots and leaf in Consul's shapes; authorize and the intentions API.
  const roots = await call("get", "/agent/connect/ca/roots");
  const root = roots.Roots[0];
  assert.ok(Date.parse(root.NotBefore) <= Date.now() && Date.now() < Date.parse(root.NotAfter), JSON.stringify(root));
  const leaf = await call("get", "/agent/connect/ca/leaf/nodeweb");
  assert.ok(Date.parse(leaf.ValidAfter) <= Date.now() && Date.now() < Date.parse(leaf.ValidBefore), JSON.stringify(leaf));
  assert.equal(leaf.ServiceURI, `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/nodeweb`);
  const started = Date.now();
  const same = await call("get", "/agent/connect/ca/leaf/nodeweb", { index: leaf.ModifyIndex, wait: "1s" });
  assert.equal(same.ModifyIndex, leaf.ModifyIndex);
  assert.ok(Date.now() - started >= 900, "the leaf query did not block");
  const client = { Target: "nodeweb", ClientCertURI: `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/web` };
  assert.equal((await call("post", "/agent/connect/authorize", undefined, client)).Authorized, true);
  await assert.rejects(call("post", "/agent/connect/authorize", undefined, { ClientCertURI: client.ClientCertURI }), (err) => {
    assert.equal(err.response && err.response.statusCode, 400, String(err));
    assert.match(String(err.response.body), /field Target/);
    return true;
  });
  assert.deepEqual(await call("get", "/connect/intentions/check", { source: "web", destination: "nodeweb" }), { Allowed: true });
  assert.deepEqual(await call("get", "/connect/intentions/match", { by: "source", name: "web" }), { web: [] });

  // What strait does not implement is an error with a reason, not "key not found".
  await assert.rejects(consul.kv.get("config/x"), (err) => {
    assert.equal(err.response && err.response.statusCode, 501, String(err));
    assert.match(JSON.stringify(err.response.body), /not supported by strait: GET \/v1\/kv\/config(\/|%2F)x/);
    return true;
  });

  await consul.agent.service.deregister("nodeweb");
  const after = await consul.agent.service.list();
  assert.ok(!("nodeweb" in after) && !("nodeweb-sidecar-proxy" in after), JSON.stringify(after));
  await eventually("nodeweb gone from the catalog", async () => (await consul.health.service("nodeweb")).length === 0);
  console.log("consul npm: all steps passed");
}

main().catch((e) => {
  const body = e.response ? ` (answer: ${JSON.stringify(e.response.body)})` : "";
  console.error(`consul npm: ${e.stack || e}${body}`);
  process.exit(1);
});
