// Compile-time checks of the config types derived from the schema: `npm test` builds this file
// with tsc, and every expect-error directive below fails the build if the type system stops
// rejecting that misuse.
import { type ConfigKey, type ConfigValues, type HermodConfig, opt } from '../../src/config/index.js';

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

// Each format gives its type; enums keep their literal unions; string lists are string[].
export const types: [
  Equals<HermodConfig['transportUrl'], string>,
  Equals<HermodConfig['rpc']['responseTimeout'], number>,
  Equals<HermodConfig['rpc']['sendTraceback'], boolean>,
  Equals<HermodConfig['rpc']['inFlightOverflow'], 'wait' | 'fail'>,
  Equals<HermodConfig['rabbit']['loginMethod'], 'AMQPLAIN' | 'PLAIN'>,
  Equals<HermodConfig['amqp1']['addressingMode'], 'dynamic' | 'routable' | 'legacy'>,
  Equals<HermodConfig['log']['level'], 'debug' | 'info' | 'warn' | 'error' | 'silent'>,
  Equals<HermodConfig['notifications']['topics'], string[]>,
] = [true, true, true, true, true, true, true, true];

export function configChecks(config: HermodConfig): void {
  const overflow: 'wait' | 'fail' = config.rpc.inFlightOverflow;
  const topics: string[] = config.notifications.topics;
  void overflow;
  void topics;
  // @ts-expect-error not one of the enum's values
  if (config.rpc.inFlightOverflow === 'x') return;
  // @ts-expect-error not one of the enum's values
  if (config.log.level === 'verbose') return;
  // @ts-expect-error a duration is a number of milliseconds
  const timeout: string = config.rpc.responseTimeout;
  void timeout;
  // @ts-expect-error a flag is a boolean
  const traceback: string = config.rpc.sendTraceback;
  void traceback;
  // @ts-expect-error no such option
  void config.rpc.responseTimout;
  // @ts-expect-error no such section
  void config.kafka;
  // @ts-expect-error a string list is not a string
  const driver: string = config.notifications.driver;
  void driver;
}

export function valueChecks(): void {
  const ok: ConfigValues = { transportUrl: 'amqp://h/', 'rpc.retry': 2, 'rpc.inFlightOverflow': 'fail' };
  const key: ConfigKey = 'rabbit.quorumQueues';
  void ok;
  void key;
  // @ts-expect-error unknown dotted key
  const misspelt: ConfigValues = { 'rpc.retri': 2 };
  // @ts-expect-error wrong value type for the key
  const wrongType: ConfigValues = { 'rpc.retry': 'two' };
  // @ts-expect-error not one of the enum's values
  const wrongEnum: ConfigValues = { 'rpc.inFlightOverflow': 'drop' };
  // @ts-expect-error a section is not a key
  const section: ConfigKey = 'rpc';
  void misspelt;
  void wrongType;
  void wrongEnum;
  void section;
}

export function optChecks(): void {
  void opt(['wait', 'fail'], 'wait', 'an enum option');
  void opt('string-list', [], 'a list option');
  // @ts-expect-error the default must be one of the choices
  void opt(['wait', 'fail'], 'drop', 'doc');
  // @ts-expect-error the default must match the format
  void opt('positive-int', 'ten', 'doc');
  // @ts-expect-error the default must match the format
  void opt('bool', 'yes', 'doc');
  // @ts-expect-error unknown format
  void opt('percent', 5, 'doc');
}
