// A factory: called once per worker with { server, topic, service, worker, transport }
// (transport: the one it is served on, for calls and notifications of its own).
export default ({ server, worker }) => ({
  async add(_ctx, { a, b }) {
    return a + b;
  },
  async whoami() {
    return { server, worker, pid: process.pid };
  },
});
