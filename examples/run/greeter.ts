// TypeScript endpoints load through tsx; a class is constructed with { server, topic, service, worker, transport }.
export default class Greeter {
  async hello(_ctx: unknown, args: { name: string }): Promise<string> {
    return `hello ${args.name}`;
  }
}
