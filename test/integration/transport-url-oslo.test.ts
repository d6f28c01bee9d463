import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { getTransport, loadConfig, parseTransportUrl } from '../../src/index.js';
import { oslo18Path, PYTHON } from '../support/oslo.js';

// oslo.messaging lets any option of the driver's group be given in transport_url's query, over
// its config file; the URL of the Python services is the one hermod is told to use. Each URL
// below is read by oslo's own driver (14 and 18) and by hermod, and the settings compared.
const READ = `
import json, sys
from oslo_config import cfg
import oslo_messaging
out = []
for url in sys.argv[1:]:
    conf = cfg.ConfigOpts(); conf([])
    try:
        t = oslo_messaging.get_rpc_transport(conf, url=url)
        g = t._driver.conf.oslo_messaging_rabbit
        out.append({'ssl': g.ssl, 'heartbeat': g.heartbeat_timeout_threshold, 'durable': g.amqp_durable_queues,
                    'autoDelete': g.amqp_auto_delete, 'quorum': g.rabbit_quorum_queue, 'ttl': g.rabbit_transient_queues_ttl,
                    'retryInterval': g.rabbit_retry_interval, 'intervalMax': g.rabbit_interval_max})
        t.cleanup()
    except Exception as e:
        out.append({'error': type(e).__name__})
print(json.dumps(out))
`;

const URLS = [
  'rabbit://g:p@127.0.0.1:1/?ssl=1',
  'rabbit://g:p@127.0.0.1:1/?ssl=true',
  'rabbit://g:p@127.0.0.1:1/?ssl=false',
  'rabbit://g:p@127.0.0.1:1/?heartbeat_timeout_threshold=30&amqp_durable_queues=true&rabbit_quorum_queue=true',
  'rabbit://g:p@127.0.0.1:1/?amqp_durable_queues=yes&amqp_auto_delete=on',
  'rabbit://g:p@127.0.0.1:1/?amqp_durable_queues=t&amqp_auto_delete=N',
  'rabbit://g:p@127.0.0.1:1/?rabbit_transient_queues_ttl=60&rabbit_retry_interval=2&rabbit_interval_max=9',
  'rabbit://g:p@127.0.0.1:1/?heartbeat_timeout_threshold=0',
  'rabbit://g:p@127.0.0.1:1/?amqp_durable_queues=maybe',
  'rabbit://g:p@127.0.0.1:1/?heartbeat_timeout_threshold=soon',
];

interface Read {
  error?: string;
  ssl?: boolean;
  heartbeat?: number;
  durable?: boolean;
  autoDelete?: boolean;
  quorum?: boolean;
  ttl?: number;
  retryInterval?: number;
  intervalMax?: number;
}

function osloReads(version: '14' | '18'): Read[] {
  const env = { ...process.env, ...(version === '18' ? { PYTHONPATH: oslo18Path() } : {}) };
  return JSON.parse(execFileSync(PYTHON, ['-c', READ, ...URLS], { env, encoding: 'utf8', timeout: 60_000 })) as Read[];
}

async function hermodReads(url: string): Promise<Read> {
  try {
    const tr = await getTransport(url, { config: loadConfig({ env: {} }) });
    const r = tr.config.rabbit;
    await tr.close();
    return {
      ssl: tr.url.tls,
      heartbeat: r.heartbeat,
      durable: r.durableQueues,
      autoDelete: r.autoDelete,
      quorum: r.quorumQueues,
      ttl: r.transientQueuesTtl / 1000,
      retryInterval: r.retryInterval / 1000,
      intervalMax: r.intervalMax / 1000,
    };
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) };
  }
}

const t = suite("transport URL query: oslo's option names read as oslo reads them");

for (const version of ['14', '18'] as const) {
  t(`oslo.messaging ${version}: the same settings from the same URL, and the same URLs refused`, async () => {
    const oslo = osloReads(version);
    for (const [i, url] of URLS.entries()) {
      const mine = await hermodReads(url);
      const theirs = oslo[i]!;
      if (theirs.error) {
        assert.is(mine.error, 'HERMOD_ERR_CONFIG', `${url}: oslo refused it (${theirs.error}), hermod read ${JSON.stringify(mine)}`);
        continue;
      }
      // The options a URL sets; the rest are each side's defaults, compared by the README's table elsewhere.
      const set = new URL(url).searchParams;
      const compare: Array<[keyof Read, string]> = [
        ['ssl', 'ssl'],
        ['heartbeat', 'heartbeat_timeout_threshold'],
        ['durable', 'amqp_durable_queues'],
        ['autoDelete', 'amqp_auto_delete'],
        ['quorum', 'rabbit_quorum_queue'],
        ['ttl', 'rabbit_transient_queues_ttl'],
        ['retryInterval', 'rabbit_retry_interval'],
        ['intervalMax', 'rabbit_interval_max'],
      ];
      for (const [field, name] of compare) {
        if (set.has(name)) assert.is(mine[field], theirs[field], `${url}: ${name} oslo ${theirs[field]}, hermod ${mine[field]}`);
      }
    }
  });
}

t("oslo's names hermod has no equivalent of are refused naming them; hermod's own names stay hermod's", async () => {
  for (const [url, message] of [
    [
      'rabbit://h/?kombu_compression=gzip',
      /'kombu_compression' is oslo\.messaging's, and hermod has no equivalent: hermod sends bodies uncompressed; it reads the ones oslo peers compress/,
    ],
    ['rabbit://h/?rabbit_qos_prefetch_count=10', /'rabbit_qos_prefetch_count' is oslo\.messaging's.*rpc\.serverConcurrency/],
    ['amqp://h/?pre_settled=rpc-cast', /'pre_settled' is oslo\.messaging's/],
    ['rabbits://h/?ssl=0', /'ssl=0' contradicts rabbits:\/\//],
    ['rabbit://h/?heartbeat=30&heartbeat_timeout_threshold=10', /'heartbeat_timeout_threshold' is given twice/],
  ] as const) {
    assert.throws(() => parseTransportUrl(url), message, url);
  }
  // Accepted and ignored: only what no behaviour of hermod depends on.
  assert.equal(parseTransportUrl('rabbit://h/?heartbeat_in_pthread=true&rpc_conn_pool_size=30').options, {});
  // Flags at the value hermod always has are taken (a URL shared with Python services may carry
  // them); the other value is refused, saying why.
  assert.equal(parseTransportUrl('rabbit://h/?direct_mandatory_flag=true&enable_cancel_on_failover=false').options, {});
  assert.throws(
    () => parseTransportUrl('rabbit://h/?direct_mandatory_flag=false'),
    /'direct_mandatory_flag=false' is oslo\.messaging's, and hermod has no equivalent: replies are always published mandatory/,
  );
  assert.throws(() => parseTransportUrl('rabbit://h/?enable_cancel_on_failover=yes'), /'enable_cancel_on_failover=yes'.*mirrored-queue/);
  assert.throws(() => parseTransportUrl('rabbit://h/?direct_mandatory_flag=maybe'), /must be true or false/);
  // oslo 18's quorum memory bounds, and oslo 14's misspelt names of them, are taken.
  assert.equal(parseTransportUrl('rabbit://h/?rabbit_quorum_max_memory_length=10&rabbit_quroum_max_memory_bytes=4096').options, {
    'rabbit.quorumMaxMemoryLength': '10',
    'rabbit.quorumMaxMemoryBytes': '4096',
  });
  // ssl=1 is TLS on 5671 where no port is given, as rabbits://; the URL reads back as written.
  const u = parseTransportUrl('rabbit://u:p@h/?ssl=1&heartbeat_timeout_threshold=30');
  assert.equal([u.tls, u.hosts[0]!.port, u.options], [true, 5671, { 'rabbit.heartbeat': '30s' }]);
  assert.is(String(u), 'rabbit://u:****@h:5671/?ssl=1&heartbeat_timeout_threshold=30');
  const a = parseTransportUrl('amqp://h/?idle_timeout=30&rpc_server_credit=7&ssl=yes');
  assert.equal([a.tls, a.hosts[0]!.port, a.options], [true, 5671, { 'amqp1.idleTimeout': '30s', 'amqp1.serverCredit': '7' }]);
});

t.run();
