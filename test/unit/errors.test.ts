import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  ConfigError,
  ENDPOINT_MODULE,
  HermodError,
  InvalidArgument,
  isRemote,
  MessageDeliveryFailure,
  MessageTooLarge,
  MessageUndeliverable,
  MessagingTimeout,
  NoSuchMethod,
  RemoteError,
  registerRemoteError,
  UnsupportedVersion,
} from '../../src/index.js';
import { deserializeFailure, serializeFailure } from '../../src/rpc/remote-errors.js';

const t = suite('errors');

t('stable codes, names, causes and instanceof', () => {
  const cause = new Error('socket');
  const e = new MessagingTimeout('late', { cause });
  assert.is(e.code, 'HERMOD_ERR_TIMEOUT');
  assert.is(e.name, 'MessagingTimeout');
  assert.is(e.cause, cause);
  assert.ok(e instanceof HermodError);
  assert.ok(e instanceof Error);
  assert.not.ok(e instanceof ConfigError);
  const u = new MessageUndeliverable('no route');
  assert.ok(u instanceof MessageDeliveryFailure);
  assert.is(u.code, 'HERMOD_ERR_UNDELIVERABLE');
  assert.not.ok(new Error('x') instanceof HermodError);
  assert.not.ok((null as unknown) instanceof HermodError);
});

t('instanceof works for errors from another copy of the module (branded codes)', () => {
  // Simulates a duplicate install: a foreign object with hermod's brand.
  const foreign = Object.create(Error.prototype, {
    [Symbol.for('hermod.error.codes')]: { value: new Set(['HERMOD_ERR', 'HERMOD_ERR_DELIVERY_FAILURE', 'HERMOD_ERR_UNDELIVERABLE']) },
  });
  assert.ok(foreign instanceof MessageUndeliverable);
  assert.ok(foreign instanceof MessageDeliveryFailure);
  assert.ok(foreign instanceof HermodError);
  assert.not.ok(foreign instanceof MessagingTimeout);
});

t('failures use the oslo format', () => {
  const f = serializeFailure(new TypeError('bad type'), { includeTraceback: true });
  assert.is(f.class, 'TypeError');
  assert.is(f.module, 'hermod.endpoint');
  assert.is(f.message, 'bad type');
  assert.equal(f.args, ['bad type']);
  assert.equal(f.kwargs, {});
  assert.ok(f.tb.length > 0 && f.tb.every((l) => l.endsWith('\n')));
  assert.equal(serializeFailure(new TypeError('x')).tb, []);
  const nsm = serializeFailure(new NoSuchMethod('frob'));
  assert.equal([nsm.module, nsm.class, nsm.args], ['oslo_messaging.rpc.dispatcher', 'NoSuchMethod', ['frob']]);
  const uv = serializeFailure(new UnsupportedVersion('2.0', 'add'));
  assert.equal([uv.class, uv.args, uv.kwargs], ['UnsupportedVersion', ['2.0'], { method: 'add' }]);
});

t("an endpoint's error class named like one of hermod's is not rebuilt as hermod's", () => {
  // The app's own classes, named as hermod's rebuilt ones are.
  class NoSuchMethodErr extends Error {}
  Object.defineProperty(NoSuchMethodErr, 'name', { value: 'NoSuchMethod' });
  class MessagingTimeoutErr extends Error {
    override name = 'MessagingTimeout';
  }
  // A subclass of the exported base owns no CODE: it is the app's too.
  class InvalidArgumentErr extends HermodError {}
  Object.defineProperty(InvalidArgumentErr, 'name', { value: 'InvalidArgument' });
  // ...and one with a code of its own.
  class NoSuchDish extends HermodError {
    static override readonly CODE = 'APP_NO_SUCH_DISH';
  }
  Object.defineProperty(NoSuchDish, 'name', { value: 'NoSuchMethod' });
  for (const thrown of [
    new NoSuchMethodErr('no such dish: soup'),
    new MessagingTimeoutErr('the oven was late'),
    new InvalidArgumentErr('ham'),
    new NoSuchDish('no such dish: stew'),
  ]) {
    const f = serializeFailure(thrown);
    assert.is(f.module, ENDPOINT_MODULE, f.class);
    const back = deserializeFailure(f);
    assert.instance(back, RemoteError, f.class);
    assert.is((back as RemoteError).excType, f.class);
    assert.is((back as RemoteError).value, thrown.message);
  }
  // hermod's own classes still go as hermod's and come back as themselves.
  for (const [thrown, cls] of [
    [new MessagingTimeout('nested call late'), MessagingTimeout],
    [new InvalidArgument('bad'), InvalidArgument],
  ] as const) {
    const f = serializeFailure(thrown);
    assert.is(f.module, 'hermod');
    assert.instance(deserializeFailure(f), cls);
  }
  // The endpoint module's registered classes are rebuilt without being listed as allowed.
  class OutOfStock extends Error {}
  registerRemoteError(ENDPOINT_MODULE, 'OutOfStock', (x) => new OutOfStock(x.message));
  assert.instance(deserializeFailure(serializeFailure(new OutOfStock('eggs'))), OutOfStock);
});

t('app errors rebuild across hermod versions: an older server sends them as hermod, an older registration names hermod', () => {
  class Sold extends Error {}
  registerRemoteError(ENDPOINT_MODULE, 'Sold', (f) => new Sold(f.message));
  const fromOld = { class: 'Sold', module: 'hermod', message: 'sold', tb: [], args: [], kwargs: {} };
  assert.instance(deserializeFailure(fromOld), Sold, 'from a server that sends app errors as hermod');
  class Legacy extends Error {}
  registerRemoteError('hermod', 'Legacy', (f) => new Legacy(f.message));
  assert.instance(deserializeFailure({ ...fromOld, class: 'Legacy', module: ENDPOINT_MODULE }), Legacy, 'registered the old way');
  // Never one of hermod's own classes: the app's NoSuchMethod stays the app's.
  const nsm = deserializeFailure({ ...fromOld, class: 'NoSuchMethod', module: ENDPOINT_MODULE });
  assert.instance(nsm, RemoteError);
  assert.not.instance(nsm, NoSuchMethod);
  assert.instance(deserializeFailure({ ...fromOld, class: 'InvalidArgument', module: ENDPOINT_MODULE }), RemoteError);
});

t("a failure's kwargs reach RemoteError.kwargs and a rebuilt error's remote.kwargs, and survive a re-raise", () => {
  const f = { class: 'InstanceNotFound', module: 'nova.exception', message: 'gone', tb: [], args: [], kwargs: { instance_id: 'i-1' } };
  const r = deserializeFailure(f) as RemoteError;
  assert.equal(r.kwargs, { instance_id: 'i-1' });
  assert.equal(serializeFailure(r).kwargs, { instance_id: 'i-1' }, 'a server re-raising it sends them on');
  class Gone extends Error {}
  registerRemoteError('nova.exception', 'Gone', (x) => new Gone(x.message));
  const g = deserializeFailure({ ...f, class: 'Gone' }, ['nova.exception']);
  assert.instance(g, Gone);
  assert.equal(isRemote(g) && g.remote.kwargs, { instance_id: 'i-1' });
  assert.equal(serializeFailure(g).kwargs, { instance_id: 'i-1' });
  // Not an object: none.
  assert.equal((deserializeFailure({ ...f, kwargs: [1] as never }) as RemoteError).kwargs, {});
});

t('thrown non-Errors still produce useful failures', () => {
  assert.match(serializeFailure('plain string').message, /plain string/);
  assert.match(serializeFailure({ code: 42 }).message, /"code":42/);
  assert.match(serializeFailure(undefined).message, /undefined/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.match(serializeFailure(cyclic).message, /object/);
  assert.is(serializeFailure(7).class, 'NonErrorThrown');
});

t('errors declare their remote module and kwargs', () => {
  class QuotaExceeded extends Error {
    static remoteModule = 'nova.exception';
    kwargs = { quota: 5 };
    override name = 'QuotaExceeded';
  }
  const f = serializeFailure(new QuotaExceeded('over quota'));
  assert.equal([f.module, f.class, f.kwargs], ['nova.exception', 'QuotaExceeded', { quota: 5 }]);
});

t('an error class that sets no name is sent as its class name; a name of its own wins', () => {
  class QuotaExceeded extends Error {
    static remoteModule = 'nova.exception';
  }
  class BadSize extends RangeError {}
  class Named extends Error {
    override name = 'Custom';
  }
  const viaProto = new Error('p');
  viaProto.name = 'SetLater';
  assert.equal(
    [new QuotaExceeded('q'), new BadSize('b'), new Named('n'), viaProto, new TypeError('t'), new Error('e')].map(
      (e) => serializeFailure(e).class,
    ),
    ['QuotaExceeded', 'BadSize', 'Custom', 'SetLater', 'TypeError', 'Error'],
  );
  // DOMException keeps its own name (AbortError), not its class.
  assert.is(serializeFailure(new DOMException('stop', 'AbortError')).class, 'AbortError');
  // An anonymous class has no class name to send: its inherited name stays.
  assert.is(serializeFailure(new (class extends Error {})('x')).class, 'Error');
});

t('unknown or disallowed remote errors become RemoteError with type, message and trace', () => {
  const e = deserializeFailure({
    class: 'ValueError',
    module: 'builtins',
    message: 'boom',
    tb: ['Traceback\n'],
    args: ['boom'],
    kwargs: {},
  });
  assert.ok(e instanceof RemoteError);
  const r = e as RemoteError;
  assert.is(r.excType, 'ValueError');
  assert.is(r.value, 'boom');
  assert.is(r.module, 'builtins');
  assert.equal(r.traceback, ['Traceback\n']);
  assert.ok(isRemote(e));
  const d = deserializeFailure({ class: 'Boom', module: 'myapp.errors', message: 'm', tb: [], args: [], kwargs: {} });
  assert.ok(d instanceof RemoteError);
});

t('registered classes are rebuilt only for allowed modules', () => {
  class QuotaError extends Error {}
  registerRemoteError('myapp.quota', 'QuotaError', (f) => new QuotaError(f.message));
  const f = { class: 'QuotaError', module: 'myapp.quota', message: 'over', tb: [], args: [], kwargs: {} };
  assert.ok(deserializeFailure(f) instanceof RemoteError);
  const rebuilt = deserializeFailure(f, ['myapp.quota']);
  assert.ok(rebuilt instanceof QuotaError);
  assert.is(rebuilt.message, 'over');
  assert.is((rebuilt as unknown as { remote: { module: string } }).remote.module, 'myapp.quota');
  // A factory that throws falls back to RemoteError rather than losing the failure.
  registerRemoteError('myapp.quota', 'Broken', () => {
    throw new Error('bad factory');
  });
  assert.ok(deserializeFailure({ ...f, class: 'Broken' }, ['myapp.quota']) instanceof RemoteError);
});

t('oslo and hermod dispatcher errors rebuild as NoSuchMethod / UnsupportedVersion', () => {
  const n = deserializeFailure({
    class: 'NoSuchMethod',
    module: 'oslo_messaging.rpc.dispatcher',
    message: 'x',
    tb: [],
    args: ['frob'],
    kwargs: {},
  });
  assert.ok(n instanceof NoSuchMethod);
  assert.is((n as NoSuchMethod).method, 'frob');
  // oslo's own, as its servers send them: the formatted text is the exception's only argument.
  const oslo = (text: string, cls: string) =>
    deserializeFailure({ class: cls, module: 'oslo_messaging.rpc.dispatcher', message: text, tb: [], args: [text], kwargs: {} });
  const on = oslo('Endpoint does not support RPC method only1', 'NoSuchMethod') as NoSuchMethod;
  assert.equal([on.method, on.message], ['only1', 'Endpoint does not support RPC method only1']);
  const ov = oslo('Endpoint does not support RPC version 1.5. Attempted method: common', 'UnsupportedVersion') as UnsupportedVersion;
  assert.equal([ov.version, ov.method], ['1.5', 'common']);
  // And passed on by a hermod endpoint that re-throws it: hermod's shape again.
  assert.equal(serializeFailure(on).args, ['only1']);
  assert.equal([serializeFailure(ov).args, serializeFailure(ov).kwargs], [['1.5'], { method: 'common' }]);
  const v = deserializeFailure(serializeFailure(new UnsupportedVersion('3.0', 'add')));
  assert.ok(v instanceof UnsupportedVersion);
  assert.is((v as UnsupportedVersion).version, '3.0');
  const big = deserializeFailure(serializeFailure(new MessageTooLarge(10, 5)));
  assert.ok(big instanceof MessageTooLarge);
  // A re-raised remote error keeps its original identity on the way out.
  const again = serializeFailure(new RemoteError('ValueError', 'boom', { module: 'builtins' }));
  assert.equal([again.class, again.module, again.message], ['ValueError', 'builtins', 'boom']);
  const rebuiltAgain = serializeFailure(n);
  assert.equal([rebuiltAgain.class, rebuiltAgain.module], ['NoSuchMethod', 'oslo_messaging.rpc.dispatcher']);
});

t('garbage failure objects do not throw', () => {
  const e = deserializeFailure({} as never);
  assert.ok(e instanceof RemoteError);
  assert.is((e as RemoteError).excType, 'Exception');
});

t('a failure whose text fields are objects (a peer\'s {"toString": 1}) still rebuilds, as JSON text, never through their toString', () => {
  const hostile = { toString: 1 } as unknown as string;
  const e = deserializeFailure({ class: 'Boom', module: 'x', message: hostile, tb: [hostile, 'line'], args: [], kwargs: {} });
  assert.ok(e instanceof RemoteError);
  assert.is((e as RemoteError).value, '{"toString":1}');
  assert.equal((e as RemoteError).traceback, ['{"toString":1}', 'line']);
  // Registered classes too (hermod's, a job's), and a number stays as written.
  const t1 = deserializeFailure({ class: 'MessagingTimeout', module: 'hermod', message: hostile, tb: [], args: [], kwargs: {} });
  assert.is(t1.message, '{"toString":1}');
  const j = deserializeFailure({ class: 'JobNotFound', module: 'hermod', message: 42 as unknown as string, tb: [], args: [], kwargs: {} });
  assert.is(j.message, '42');
  // NoSuchMethod keeps the server's text (it may say where the method is served), its method as JSON text.
  const n = deserializeFailure({ class: 'NoSuchMethod', module: 'hermod', message: 'm', tb: [], args: [], kwargs: { method: hostile } });
  assert.is(n.message, 'm');
  assert.is((n as Error & { method?: string }).method, '{"toString":1}');
  const bare = deserializeFailure({ class: 'NoSuchMethod', module: 'hermod', message: '', tb: [], args: [], kwargs: { method: hostile } });
  assert.match(bare.message, /^Endpoint does not support RPC method \{"toString":1\}$/);
});

t.run();
