// An undici Agent that applies the address policy (address-policy.ts) to every connection it
// opens, on the address the socket actually connects to: the check sits in the connector's DNS
// lookup, so a name that resolves to a public address when asked and to 169.254.169.254 when
// connecting (DNS rebinding) is still refused. Redirect hops get new connections: checked too.
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { judgeAddress, judgeHostname, normalizeHostname, type AddressClass, type AddressVerdict } from './address-policy.ts';

export interface ResolvedAddress { address: string; family: number }

/** How host names become addresses; the system resolver (getaddrinfo) unless a test injects one. */
export type HostLookup = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemLookup: HostLookup = (hostname) => dnsLookup(hostname, { all: true, order: 'verbatim' });

/** A connection the address policy refused. Carries the details for logs; tenants see less. */
export class AddressRefusedError extends Error {
  readonly code = 'ERR_FERRY_ADDRESS_REFUSED';
  readonly hostname: string;
  readonly addressClass: AddressClass;
  constructor(hostname: string, port: number | undefined, verdict: Extract<AddressVerdict, { allowed: false }>) {
    super(`refused to connect to ${hostname}${port === undefined ? '' : `:${port}`}: ${verdict.reason}`);
    this.name = 'AddressRefusedError';
    this.hostname = hostname;
    this.addressClass = verdict.cls;
  }
}

export interface GuardedAgentOptions {
  /** Whether an administrator listed hostname:port, which lets it be private or loopback. */
  isTrusted(hostname: string, port: number): boolean;
  lookup?: HostLookup;
  connectTimeoutMs: number;
  /** Backstops for the per-request AbortSignal of the caller. */
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Hard cap on any response undici reads for us, below which callers apply their own limits. */
  maxResponseBytes: number;
}

export function createGuardedAgent(options: GuardedAgentOptions): Agent {
  const resolve = options.lookup ?? systemLookup;
  // One connector per trust level: net's lookup hook sees the host name but not the port.
  const connector = (trusted: boolean): buildConnector.connector =>
    buildConnector({ timeout: options.connectTimeoutMs, allowH2: false, lookup: guardedLookup(resolve, trusted) });
  const listed = connector(true);
  const unlisted = connector(false);
  return new Agent({
    allowH2: false,
    headersTimeout: options.headersTimeoutMs,
    bodyTimeout: options.bodyTimeoutMs,
    maxResponseSize: options.maxResponseBytes,
    connect: (connectOptions, callback) => {
      const hostname = normalizeHostname(connectOptions.hostname);
      const port = Number(connectOptions.port) || (connectOptions.protocol === 'https:' ? 443 : 80);
      const trusted = options.isTrusted(hostname, port);
      // IP literals and metadata names: net.connect skips the lookup hook for IPs, so judge here.
      const verdict = judgeHostname(hostname, trusted);
      if (verdict !== undefined && !verdict.allowed) {
        callback(new AddressRefusedError(hostname, port, verdict), null);
        return;
      }
      (trusted ? listed : unlisted)(connectOptions, callback);
    },
  });
}

/**
 * net's lookup hook: resolves, then refuses the connection when any of the addresses is not
 * allowed (a name with one public and one metadata address is not a registry).
 */
function guardedLookup(resolve: HostLookup, trusted: boolean): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    resolve(hostname).then((resolved) => {
      const family = lookupOptions.family === 'IPv4' ? 4 : lookupOptions.family === 'IPv6' ? 6 : lookupOptions.family ?? 0;
      const addresses = resolved.filter((a) => family === 0 || a.family === family);
      for (const { address } of addresses) {
        const verdict = judgeAddress(address, trusted);
        if (!verdict.allowed) {
          callback(new AddressRefusedError(normalizeHostname(hostname), undefined, { ...verdict, reason: `it resolves to ${verdict.reason}` }), '', 0);
          return;
        }
      }
      const first = addresses[0];
      if (first === undefined) {
        callback(Object.assign(new Error(`lookup ${hostname}: no addresses`), { code: 'ENOTFOUND', hostname }), '', 0);
      } else if (lookupOptions.all === true) {
        callback(null, addresses);
      } else {
        callback(null, first.address, first.family);
      }
    }, (err: unknown) => {
      callback(err instanceof Error ? err : new Error(String(err)), '', 0);
    });
  };
}
