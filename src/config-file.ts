// --config FILE: a JSON object whose keys are the long flag names in camelCase (`routeDir`,
// `streamWindow`, `noInspect`). Precedence: flags > NBD_TUNNEL_* env > the file > defaults; for
// `route` and `allow` (objects in the file) the entries merge, and a flag's entry for the same
// route name or pattern replaces the file's.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from './config.js';

/** How a key's value is written in the file and handed on as a flag value. */
export type KeyKind =
  /** a string (numbers taken as their decimal text): a flag with a value */
  | 'value'
  /** true/false: a flag without a value */
  | 'switch'
  /** true/false for a --no-X flag: `noInspect: true` is `inspect: false` */
  | 'negated'
  /** {"NAME": "SOCKET"}: repeated NAME=SOCKET */
  | 'routes'
  /** {"PATTERN": ["ID", ...] or "ID,ID"}: repeated PATTERN=ID,ID */
  | 'rules';

export interface KeySpec {
  /** The flags object's property (commander's attribute name). */
  attribute: string;
  kind: KeyKind;
}

export type FlagValue = string | boolean | string[];

/** `--route-dir` → `routeDir`; `--no-inspect` → `noInspect`. */
export function fileKey(longFlag: string): string {
  return longFlag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The file's settings, as flag values by attribute name; throws ConfigError naming the file and key. */
export function readConfigFile(path: string, keys: ReadonlyMap<string, KeySpec>): Map<string, FlagValue> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`--config ${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`--config ${path}: not valid JSON: ${(error as Error).message}`);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new ConfigError(`--config ${path}: expected a JSON object of settings, as in {"routeDir": "/run/nbd-tunnel"}`);
  }
  const values = new Map<string, FlagValue>();
  for (const [key, value] of Object.entries(document)) {
    const spec = keys.get(key);
    if (!spec) {
      const camel = fileKey(key);
      const hint = camel !== key && keys.has(camel) ? ` (keys are flag names in camelCase: '${camel}')` : '';
      throw new ConfigError(`--config ${path}: unknown key '${key}'${hint}`);
    }
    values.set(spec.attribute, flagValue(`--config ${path}: '${key}'`, spec.kind, value));
  }
  return values;
}

function flagValue(where: string, kind: KeyKind, value: unknown): FlagValue {
  switch (kind) {
    case 'value':
      if (typeof value === 'string') return value;
      if (typeof value === 'number' && Number.isFinite(value)) return String(value);
      throw new ConfigError(`${where}: expected a string or a number`);
    case 'switch':
    case 'negated':
      if (typeof value !== 'boolean') throw new ConfigError(`${where}: expected true or false`);
      return kind === 'negated' ? !value : value;
    case 'routes':
    case 'rules':
      return entries(where, kind, value);
  }
}

function entries(where: string, kind: 'routes' | 'rules', value: unknown): string[] {
  const example = kind === 'routes' ? '{"vm1-vda": "/run/nbd-tunnel/vm1-vda.sock"}' : '{"vm1-*": ["hv1.example.org"]}';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`${where}: expected an object, as in ${example}`);
  return Object.entries(value).map(([name, target]) => {
    if (typeof target === 'string') return `${name}=${target}`;
    if (kind === 'rules' && Array.isArray(target) && target.every((t) => typeof t === 'string')) return `${name}=${target.join(',')}`;
    throw new ConfigError(`${where}: '${name}': expected ${kind === 'routes' ? 'a socket path' : 'a list of identities'}, as in ${example}`);
  });
}

/**
 * The flags with the file's settings under them: a setting the command line or the environment
 * gave (`given`) wins; lists merge by the name before '=', the given entries replacing the file's.
 */
export function applyConfigFile<F extends object>(flags: F, given: (attribute: string) => boolean, file: ReadonlyMap<string, FlagValue>): F {
  const merged = { ...flags } as Record<string, unknown>;
  for (const [attribute, value] of file) {
    if (Array.isArray(value)) {
      const own = (merged[attribute] as string[] | undefined) ?? [];
      const names = new Set(own.map(entryName));
      merged[attribute] = [...value.filter((entry) => !names.has(entryName(entry))), ...own];
    } else if (!given(attribute)) {
      merged[attribute] = value;
    }
  }
  return merged as F;
}

const entryName = (entry: string): string => entry.slice(0, Math.max(0, entry.indexOf('=')));

/** What the config file may set, from a command's options; `route`, `vm` and `allow` are objects there. */
export function configFileKeys(command: Command): Map<string, KeySpec> {
  const keys = new Map<string, KeySpec>();
  for (const option of command.options) {
    if (!option.long || option.long === '--config') continue;
    const attribute = option.attributeName();
    const kind: KeyKind = attribute === 'route' || attribute === 'vm' ? 'routes' : attribute === 'allow' ? 'rules' : option.negate ? 'negated' : option.isBoolean() ? 'switch' : 'value';
    keys.set(fileKey(option.long), { attribute, kind });
  }
  return keys;
}

export interface LoadedFlags<F> {
  flags: F;
  /** The flags with the file read again (SIGHUP); throws ConfigError for a broken file. */
  reread(): F;
  /** Attributes the file set at start. */
  fromFile: ReadonlySet<string>;
}

/** The command's flags with its --config file (if any) under them. */
export function loadFlags<F extends { config?: string }>(command: Command, flags: F): LoadedFlags<F> {
  const path = flags.config;
  if (path === undefined) return { flags, reread: () => flags, fromFile: new Set() };
  const keys = configFileKeys(command);
  const given = (attribute: string): boolean => ['cli', 'env'].includes(command.getOptionValueSource(attribute) ?? '');
  const read = (): { flags: F; file: Map<string, FlagValue> } => {
    const file = readConfigFile(path, keys);
    return { flags: applyConfigFile(flags, given, file), file };
  };
  const first = read();
  return { flags: first.flags, reread: () => read().flags, fromFile: new Set(first.file.keys()) };
}
