import { createRequire } from 'node:module';
import type { Ajv2020 as AjvClass, ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import type { FormatsPlugin } from 'ajv-formats';
import { InvalidArgument } from '../core/errors.js';
import type { Contracts, JsonSchema, MethodContract } from './contract.js';
import { ContractViolation, MAX_VIOLATIONS, type Violation } from './violation.js';

/** A method's contract with its schemas compiled. */
export interface CompiledContract {
  readonly contract: MethodContract;
  readonly args: ValidateFunction;
  readonly result: ValidateFunction | undefined;
}

const require = createRequire(import.meta.url);
let shared: AjvClass | undefined;

/**
 * The one ajv instance of the process, made on first use: applications without contracts never
 * load ajv (importing hermod stays light). Draft 2020-12 as the gateway's; `allErrors` so a
 * violation lists every problem (bounded by the message size limit, and reported up to
 * {@link MAX_VIOLATIONS}); unknown keywords and formats are schema errors (strict).
 */
export function sharedAjv(): AjvClass {
  if (shared) return shared;
  const Ajv = (require('ajv/dist/2020.js') as { default: typeof AjvClass }).default;
  const addFormats = (require('ajv-formats') as { default: FormatsPlugin }).default;
  const ajv = new Ajv({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
  addFormats(ajv);
  ajv.addKeyword({
    keyword: 'maxDepth',
    schemaType: 'number',
    errors: false,
    validate: (max: number, data: unknown) => depthAtMost(data, max),
  });
  shared = ajv;
  return ajv;
}

/** Whether `value` nests objects and arrays at most `max` levels deep (a scalar is 0). */
export function depthAtMost(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (max < 1) return false;
  for (const v of Array.isArray(value) ? value : Object.values(value)) if (!depthAtMost(v, max - 1)) return false;
  return true;
}

const COMPOSED = ['allOf', 'anyOf', 'oneOf', '$ref', 'if', 'dependentSchemas'];

/**
 * The argument schema as the server checks it: closed to unknown names unless it says otherwise.
 * A composed schema is closed with `unevaluatedProperties`, which sees through its subschemas.
 */
export function closedArgs(schema: JsonSchema): Record<string, unknown> {
  const s = schema as Record<string, unknown>;
  if (s.additionalProperties !== undefined || s.unevaluatedProperties !== undefined) return { ...s };
  const composed = COMPOSED.some((k) => k in s);
  return { type: 'object', ...s, [composed ? 'unevaluatedProperties' : 'additionalProperties']: false };
}

const compiled = new WeakMap<MethodContract, CompiledContract>();

/** Compiles each method's schemas once (per contract object, process-wide); bad schemas are InvalidArgument. */
export function compileContracts(contracts: Contracts, label: string): Map<string, CompiledContract> {
  const out = new Map<string, CompiledContract>();
  for (const [method, contract] of Object.entries(contracts)) {
    let c = compiled.get(contract);
    if (!c) {
      c = {
        contract,
        args: compileOnce(argsCompiled, contract.args, closedArgs, `${label}: the args schema of ${method}`),
        result:
          contract.result === undefined
            ? undefined
            : compileOnce(resultCompiled, contract.result, (s) => s, `${label}: the result schema of ${method}`),
      };
      compiled.set(contract, c);
    }
    out.set(method, c);
  }
  return out;
}

/** Validators by the schema object a contract gave, so one schema shared by several methods compiles once. */
const argsCompiled = new WeakMap<object, ValidateFunction>();
const resultCompiled = new WeakMap<object, ValidateFunction>();

function compileOnce(
  cache: WeakMap<object, ValidateFunction>,
  schema: JsonSchema,
  prepare: (s: JsonSchema) => object,
  where: string,
): ValidateFunction {
  const key = typeof schema === 'object' && schema !== null ? (schema as object) : undefined;
  const hit = key && cache.get(key);
  if (hit) return hit;
  const v = compileSchema(prepare(schema), where);
  if (key) cache.set(key, v);
  return v;
}

const ID_TAKEN = /^schema with key or id "(.*)" already exists$/;

function compileSchema(schema: object, where: string): ValidateFunction {
  const ajv = sharedAjv();
  // Bounded by the ids one schema can declare; each pass frees one.
  for (let freed = 0; ; freed++) {
    try {
      return ajv.compile(schema);
    } catch (err) {
      // ajv holds every `$id` it compiled: a second schema object with the same id (a reloaded
      // module's copy, or two classes declaring one TypeBox type) was refused. The newest takes
      // the id; validators compiled before keep what they compiled.
      const taken = ID_TAKEN.exec((err as Error).message)?.[1];
      if (taken !== undefined && freed < 1000) {
        ajv.removeSchema(taken);
        continue;
      }
      throw new InvalidArgument(`${where} is not a usable JSON Schema: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Throws ContractViolation unless `args` meet the method's argument contract. */
export function checkArgs(c: CompiledContract, method: string, args: unknown): void {
  if (!c.args(args))
    throw new ContractViolation(`arguments of ${method} break its contract`, violations(c.args.errors), { of: 'arguments' });
}

/** Throws ContractViolation unless `result` meets the method's result contract (if it has one). */
export function checkResult(c: CompiledContract, method: string, result: unknown): void {
  if (c.result && !c.result(result))
    throw new ContractViolation(`the result of ${method} breaks its contract`, violations(c.result.errors), { of: 'result' });
}

/**
 * ajv's errors as violations: the path names the offending property itself where ajv names it in
 * params. All of them: ContractViolation shows the first MAX_VIOLATIONS and counts the rest.
 */
export function violations(errors: ErrorObject[] | null | undefined): Violation[] {
  const out: Violation[] = [];
  for (const e of errors ?? []) {
    const p = e.params as Record<string, unknown>;
    if (e.keyword === 'additionalProperties' || e.keyword === 'unevaluatedProperties') {
      const name = String(p.additionalProperty ?? p.unevaluatedProperty ?? '');
      out.push({ path: `${capped(e.instancePath, 400)}/${pointerPart(name)}`, message: 'is not allowed here (unknown name)' });
    } else if (e.keyword === 'required') {
      out.push({ path: `${capped(e.instancePath, 400)}/${pointerPart(String(p.missingProperty))}`, message: 'is required' });
    } else if (e.keyword === 'maxDepth') {
      out.push({ path: capped(e.instancePath, 400), message: 'nests deeper than its maxDepth allows' });
    } else {
      out.push({ path: capped(e.instancePath, 400), message: e.message ?? e.keyword });
    }
  }
  return out;
}

const pointerPart = (name: string) => capped(name).replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * Client text a violation quotes back (a property name, a path), cut to a size a message can
 * carry: a 900 kB key made a 1.8 MB answer, at the gateway and in the caller's failure alike.
 */
export function capped(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
