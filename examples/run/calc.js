// A factory: called once per worker with { server, topic, service, worker }.
export default ({ server, worker }) => ({
  async add(_ctx, { a, b }) {
    return a + b;
  },
  async whoami() {
    return { server, worker, pid: process.pid };
  },
});
