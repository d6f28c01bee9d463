// Layer rules of hermod (README "Architecture"), checked by `npm run lint` in CI.
// Dependencies point down: bin → cli → rpc/notify → transport → driver → config → core.
// `npm run deps:graph` prints the folder-level graph (mermaid) of the same modules.

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles anywhere: a cycle means two rooms that are really one, or a layer pointing up.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-bin',
      severity: 'error',
      comment: 'The library never imports the command-line programs.',
      from: { path: '^src/' },
      to: { path: '^bin/' },
    },
    {
      name: 'cli-only-from-bin',
      severity: 'error',
      comment: 'src/cli/ is what the bins share (argv, logging, exit codes); library code never depends on it.',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'no-test-code',
      severity: 'error',
      comment: 'Shipped and benchmark code never imports tests or test support.',
      from: { path: '^(src|bin|bench|scripts)/' },
      to: { path: '^test/' },
    },
    {
      name: 'upper-layers-no-protocol',
      severity: 'error',
      comment:
        'rpc/, notify/, gateway/ and ops/ talk only to Transport and the Driver contract: never to a concrete driver, the router, amqplib or rhea.',
      from: { path: '^src/(rpc|notify|gateway|ops|jobs)/' },
      to: { path: ['^src/driver/(rabbit|amqp1|memory)/', '^src/router/', '^src/rhea/', '(^|/)node_modules/(amqplib|rhea)/'] },
    },
    {
      name: 'ops-above-rpc',
      comment: 'src/ops/ (runner, workers, hot reload) builds on rpc/, notify/ and the transport; nothing below it imports it.',
      severity: 'error',
      from: { path: '^src/(core|config|driver|rpc|notify|router|rhea)/' },
      to: { path: '^src/ops/' },
    },
    {
      name: 'driver-stays-down',
      severity: 'error',
      comment: 'A driver never imports the layers above it.',
      from: { path: '^src/driver/' },
      to: { path: ['^src/(rpc|notify|gateway|ops|cli|router)/', '^src/transport\\.ts$', '^src/index\\.ts$'] },
    },
    {
      name: 'driver-not-another-driver',
      severity: 'error',
      comment: 'rabbit/, amqp1/ and memory/ share code only through src/driver/*.ts.',
      from: { path: '^src/driver/(rabbit|amqp1|memory)/' },
      to: { path: '^src/driver/(rabbit|amqp1|memory)/', pathNot: '^src/driver/$1/' },
    },
    {
      name: 'router-standalone',
      severity: 'error',
      comment: 'The embedded router is a server of its own: it never imports rpc/, notify/, the drivers or the transport.',
      from: { path: '^src/router/' },
      to: { path: ['^src/(rpc|notify|gateway|ops|cli|driver)/', '^src/transport\\.ts$', '^src/index\\.ts$'] },
    },
    {
      name: 'jobs-below-rpc-client-server',
      severity: 'error',
      comment:
        'src/jobs/ (long operations) is hooked into the RPC client, server and request; it uses only the dispatcher types and remote errors of rpc/, never those three.',
      from: { path: '^src/jobs/' },
      to: {
        path: ['^src/rpc/(client|server|request)\\.ts$', '^src/(notify|gateway|ops|cli)/', '^src/transport\\.ts$', '^src/index\\.ts$'],
      },
    },
    {
      name: 'core-is-the-floor',
      severity: 'error',
      comment: 'src/core/ imports nothing of hermod outside itself.',
      from: { path: '^src/core/' },
      to: { path: '^src/', pathNot: '^src/core/' },
    },
    {
      name: 'config-above-core-only',
      severity: 'error',
      comment: 'src/config/ (schema, loading, transport URLs) builds on core only.',
      from: { path: '^src/config/' },
      to: { path: '^src/', pathNot: '^src/(core|config)/' },
    },
    {
      name: 'contracts-above-core-only',
      severity: 'error',
      comment: 'src/contracts/ (method schemas, their validation, ContractViolation) builds on core only: rpc/, gateway/ and cli/ use it.',
      from: { path: '^src/contracts/' },
      to: { path: '^src/', pathNot: '^src/(core|contracts)/' },
    },
    {
      name: 'rhea-internals-in-one-place',
      severity: 'error',
      comment: 'rhea is used by the AMQP 1.0 driver and the router; its internals only through src/rhea/.',
      from: { path: '^src/', pathNot: '^src/(rhea|driver/amqp1|router)/' },
      to: { path: '(^|/)node_modules/rhea/' },
    },
    {
      name: 'amqplib-in-rabbit-driver',
      severity: 'error',
      comment: 'Only the RabbitMQ driver speaks AMQP 0-9-1.',
      from: { path: '^src/', pathNot: '^src/driver/rabbit/' },
      to: { path: '(^|/)node_modules/amqplib/' },
    },
    {
      name: 'rhea-adapter-is-leaf',
      severity: 'error',
      comment: 'The rhea adapter knows rhea, not hermod.',
      from: { path: '^src/rhea/' },
      to: { path: '^src/', pathNot: '^src/(rhea|core)/' },
    },
    {
      name: 'ops-on-top',
      severity: 'error',
      comment: 'src/ops/ (runner, workers, metrics, status) builds on rpc/, notify/ and the transport; nothing else in src/ imports it.',
      from: { path: '^src/', pathNot: '^src/ops/' },
      to: { path: '^src/ops/' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      comment:
        'Every import resolves (a moved file left a stale path). tsx types its API only as .d.mts, which the resolver finds but does not read.',
      from: {},
      to: { couldNotResolve: true, pathNot: '^tsx/(esm|cjs)/api$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // bench/peers is a package of its own (NestJS, Moleculer), installed only for the bench.
    exclude: { path: '(^|/)(dist|coverage)/|^bench/peers/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.mjs', '.cjs'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      // typebox is ESM-only and names its entry in "module".
      mainFields: ['main', 'module', 'types'],
    },
    reporterOptions: {
      archi: { collapsePattern: '^(src/[^/]+/|src/[^/]+\\.ts$|bin/|bench/|scripts/)' },
    },
  },
};
