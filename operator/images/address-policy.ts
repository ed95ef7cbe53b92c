// Which network addresses the registry client may talk to on a tenant's behalf. A tenant picks
// the registry host of an image, so without this the operator would fetch from any address it
// can reach (cloud metadata, the API server, databases). Pure; guarded-agent.ts applies it to
// every connection at connect time, registry-client.ts to token realms.
import { isIP } from 'node:net';

/**
 * - public: routable on the internet; always allowed.
 * - private, loopback: RFC 1918, CGNAT, ULA, 127/8, ::1; allowed only for hosts an administrator listed.
 * - link-local, metadata, reserved: 169.254/16, fe80::/10, cloud metadata endpoints, unspecified,
 *   multicast, 240/4; never allowed (no registry lives there, credentials do).
 */
export type AddressClass = 'public' | 'private' | 'loopback' | 'link-local' | 'metadata' | 'reserved';

/** Host names of metadata services, refused before any lookup (they resolve to link-local anyway). */
export const METADATA_HOSTNAMES: ReadonlySet<string> = new Set(['metadata.google.internal', 'metadata.goog', 'metadata']);

/**
 * Token realms every registry may use besides its own host, for public registries whose API and
 * token hosts differ (Docker Hub; GitLab's registry.gitlab.com). Public hosts: a tenant could name
 * them as a registry anyway.
 */
export const DEFAULT_TOKEN_REALMS: readonly string[] = ['auth.docker.io', 'gitlab.com'];

type Range4 = [cidr: string, cls: AddressClass];

// Most specific first: the first match wins.
const IPV4_RANGES: Range4[] = [
  ['169.254.169.254/32', 'metadata'], // AWS, GCP, Azure, OpenStack, Oracle
  ['169.254.170.2/32', 'metadata'], // ECS task credentials
  ['100.100.100.200/32', 'metadata'], // Alibaba Cloud
  ['0.0.0.0/8', 'reserved'], // NOTE: connecting to 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'private'], // shared address space, used for pod and node networks
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'private'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'private'],
  ['224.0.0.0/4', 'reserved'], // multicast
  ['240.0.0.0/4', 'reserved'], // incl. 255.255.255.255
];

const IPV4_PARSED = IPV4_RANGES.map(([cidr, cls]) => {
  const [base = '', bits = '32'] = cidr.split('/');
  const prefix = Number(bits);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { network: (ipv4ToNumber(base) & mask) >>> 0, mask, cls };
});

/** Classifies an IPv4 or IPv6 address (IPv6 may carry brackets or a zone). Throws on anything else. */
export function classifyAddress(address: string): AddressClass {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return classifyIpv4(ipv4ToNumber(bare));
  if (family === 6) return classifyIpv6(ipv6ToWords(bare));
  throw new Error(`not an IP address: ${JSON.stringify(address)}`);
}

function classifyIpv4(value: number): AddressClass {
  for (const range of IPV4_PARSED) if (((value & range.mask) >>> 0) === range.network) return range.cls;
  return 'public';
}

function classifyIpv6(w: number[]): AddressClass {
  const word = (i: number): number => w[i] ?? 0;
  const zeros = (from: number, to: number): boolean => w.slice(from, to).every((x) => x === 0);
  const embedded = (): number => ((word(6) << 16) | word(7)) >>> 0;
  if (zeros(0, 8)) return 'reserved'; // ::
  if (zeros(0, 7) && word(7) === 1) return 'loopback'; // ::1
  // IPv4 inside IPv6 reaches the IPv4 address: classify that (mapped, NAT64, deprecated compatible).
  if (zeros(0, 5) && word(5) === 0xffff) return classifyIpv4(embedded());
  if (word(0) === 0x64 && word(1) === 0xff9b && (zeros(2, 6) || word(2) === 1)) return classifyIpv4(embedded());
  if (zeros(0, 6)) return 'reserved';
  if (word(0) === 0x2002) { // 6to4 carries an IPv4 address in bits 16..47
    const v4 = classifyIpv4(((word(1) << 16) | word(2)) >>> 0);
    if (v4 !== 'public') return v4;
  }
  if (word(0) === 0xfd00 && word(1) === 0x0ec2 && zeros(2, 7) && word(7) === 0x254) return 'metadata'; // AWS IMDS over IPv6
  if ((word(0) & 0xfe00) === 0xfc00) return 'private'; // fc00::/7
  if ((word(0) & 0xffc0) === 0xfe80) return 'link-local'; // fe80::/10
  if ((word(0) & 0xffc0) === 0xfec0) return 'private'; // deprecated site-local
  if ((word(0) & 0xff00) === 0xff00) return 'reserved'; // multicast
  if (word(0) === 0x100 && zeros(1, 4)) return 'reserved'; // discard-only 100::/64
  return 'public';
}

function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
}

/** Eight 16-bit words of a valid IPv6 address (checked with isIP first), embedded IPv4 included. */
function ipv6ToWords(address: string): number[] {
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4ToNumber(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** What the address policy says about one destination; `reason` is for logs, not for tenants. */
export type AddressVerdict = { allowed: true } | { allowed: false; cls: AddressClass; reason: string };

/**
 * The rule: public addresses always; private and loopback ones only for a host an
 * administrator listed (`trusted`); link-local, metadata and reserved ones never.
 */
export function judgeAddress(address: string, trusted: boolean): AddressVerdict {
  const cls = classifyAddress(address);
  if (cls === 'public') return { allowed: true };
  if ((cls === 'private' || cls === 'loopback') && trusted) return { allowed: true };
  return { allowed: false, cls, reason: `${address} is a ${cls} address` };
}

/**
 * Judges a host before any lookup: metadata names are refused, IP literals are judged as
 * addresses (the system resolver is never asked about them), other names need a lookup (undefined).
 */
export function judgeHostname(hostname: string, trusted: boolean): AddressVerdict | undefined {
  const name = normalizeHostname(hostname);
  if (METADATA_HOSTNAMES.has(name)) return { allowed: false, cls: 'metadata', reason: `${name} is a cloud metadata host name` };
  if (isIP(name) !== 0) return judgeAddress(name, trusted);
  return undefined;
}

/** Lower case, no brackets around IPv6, no trailing dot ("metadata.google.internal." is the same name). */
export function normalizeHostname(hostname: string): string {
  return hostname.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.+$/, '');
}

interface HostEntry { hostname: string; port: number | undefined }

/**
 * A list of host[:port] as an administrator writes them (a scheme or path is tolerated and
 * ignored). An entry without a port covers the default ports 80 and 443 only: listing
 * `registry.corp` must not open `registry.corp:22`.
 */
export class HostList {
  readonly #entries: HostEntry[];

  constructor(entries: Iterable<string>) {
    this.#entries = [];
    for (const raw of entries) {
      const entry = parseHostEntry(raw);
      if (entry !== undefined) this.#entries.push(entry);
    }
  }

  /** Whether `host[:port]` (as in an image reference or URL.host) is listed; no port means the scheme's default. */
  hasAuthority(authority: string): boolean {
    const entry = parseHostEntry(authority);
    return entry !== undefined && this.matches(entry.hostname, entry.port);
  }

  /** Whether a connection to hostname:port is covered; an undefined port is a default port. */
  matches(hostname: string, port: number | undefined): boolean {
    const name = normalizeHostname(hostname);
    const isDefault = port === undefined || port === 80 || port === 443;
    return this.#entries.some((e) => e.hostname === name && (e.port === port || (e.port === undefined && isDefault)));
  }

  concat(other: HostList): HostList {
    const list = new HostList([]);
    list.#entries.push(...this.#entries, ...other.#entries);
    return list;
  }
}

function parseHostEntry(raw: string): HostEntry | undefined {
  const authority = raw.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '');
  if (authority === '') return undefined;
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (match === null) return { hostname: normalizeHostname(authority), port: undefined }; // e.g. a bare IPv6: kept, matches itself
  const [, host = '', port] = match;
  return { hostname: normalizeHostname(host), port: port === undefined ? undefined : Number(port) };
}

/**
 * Whether a registry may send us to `realm` for a token: its own host name (on any port: the
 * registry already chose that name), or a host an administrator allowed. The address policy
 * still applies to the realm's connection.
 */
export function isRealmAllowed(realm: URL, registryHostnames: readonly string[], allowed: HostList): boolean {
  const realmHost = normalizeHostname(realm.hostname);
  if (registryHostnames.some((h) => normalizeHostname(h) === realmHost)) return true;
  const port = realm.port === '' ? undefined : Number(realm.port);
  return allowed.matches(realmHost, port);
}
