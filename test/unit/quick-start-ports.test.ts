// The two quick starts must not collide (issue #13): the router and the CLIs use 5672, the
// RabbitMQ of docker-compose, config/hermod-rabbit.json and the README's RabbitMQ quick start
// agree on another port.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/index.js';
import { parseTransportUrl } from '../../src/config/transport-url.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const read = (f: string) => readFileSync(path.join(root, f), 'utf8');
const t = suite('quick-start ports');

t('RabbitMQ of the quick start is on one port, not the router’s 5672', () => {
  const compose = read('docker-compose.yml');
  const service = compose.slice(compose.indexOf('  rabbitmq:'), compose.indexOf('\n  router:'));
  const mapped = /"127\.0\.0\.1:(\d+):5672"/.exec(service);
  assert.ok(mapped, 'docker-compose maps RabbitMQ’s 5672 on loopback');
  const rabbitPort = Number(mapped![1]);
  assert.is.not(rabbitPort, 5672);

  const file = path.join(root, 'config', 'hermod-rabbit.json');
  const fromFile = parseTransportUrl(loadConfig({ env: {}, files: [file] }).transportUrl);
  assert.is(fromFile.driver, 'rabbit');
  assert.is(fromFile.hosts[0]!.port, rabbitPort, 'config/hermod-rabbit.json points at the compose RabbitMQ');

  const readme = read('README.md');
  const block = readme.slice(readme.indexOf('docker compose up -d --wait rabbitmq'));
  const quick = block.slice(0, block.indexOf('```'));
  assert.match(quick, new RegExp(`rabbit://guest:guest@127\\.0\\.0\\.1:${rabbitPort}/`));
  assert.match(readme, /npx hermod-router {2,}# 1\. AMQP 1\.0 router on 127\.0\.0\.1:5672/);
  assert.match(read('bin/main/hermod-router.ts'), /'--port <port>'[^\n]*, 5672\)/, 'the router’s default port');
});

t.run();
