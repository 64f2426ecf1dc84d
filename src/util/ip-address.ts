/**
 * IP addresses as limits and trust decisions need them: one canonical
 * spelling per address, and CIDR ranges of trusted peers.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

/**
 * Parses trusted-proxy entries: IPv4 or IPv6 addresses, optionally with a
 * `/prefix`.
 *
 * @throws {RangeError} naming the first entry that is neither.
 */
export function parseTrustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const raw of entries) {
    const entry = raw.trim();
    const slash = entry.indexOf("/");
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
    const bits = family === "ipv4" ? 32 : 128;
    const prefixText = slash === -1 ? String(bits) : entry.slice(slash + 1);
    const prefix = Number(prefixText);
    if (family === undefined || !/^\d{1,3}$/.test(prefixText) || prefix > bits) {
      throw new RangeError(`invalid trusted proxy ${JSON.stringify(raw)}: expected an IP address or CIDR range`);
    }
    list.addSubnet(address, prefix, family);
  }
  return list;
}

/**
 * The canonical text of an IP address (brackets, port and zone removed;
 * IPv6 compressed and lower case; IPv4-mapped IPv6 as IPv4), or undefined if
 * `text` is not one. One spelling per address, so one client gets one budget.
 */
export function canonicalAddress(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  let address = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(address);
  if (bracketed !== null) address = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(address)) address = address.slice(0, address.indexOf(":"));
  const zone = address.indexOf("%");
  if (zone !== -1) address = address.slice(0, zone);
  if (isIPv4(address)) return address.split(".").map(Number).join(".");
  if (!isIPv6(address)) return undefined;
  const groups = ipv6Groups(address);
  if (groups === undefined) return undefined;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join(".");
  }
  // The WHATWG URL parser writes IPv6 hosts in RFC 5952's canonical form.
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/**
 * The key a per-client limit should count `address` under: an IPv4 address
 * as it is, an IPv6 address as its network of `ipv6PrefixLength` bits
 * (`"2001:db8:1:2::/64"`), since one subscriber is usually given a whole
 * /64 and could otherwise spread over 2^64 budgets. Anything else (such as
 * `"unknown"`) is returned unchanged.
 */
export function addressKey(address: string, ipv6PrefixLength: number): string {
  if (!isIPv6(address) || ipv6PrefixLength >= 128) return address;
  const groups = ipv6Groups(address);
  if (groups === undefined) return address;
  const masked = groups.map((group, i) => {
    const keep = Math.min(Math.max(ipv6PrefixLength - 16 * i, 0), 16);
    return keep === 0 ? 0 : group & ((0xffff << (16 - keep)) & 0xffff);
  });
  const network = new URL(`http://[${masked.map((g) => g.toString(16)).join(":")}]/`).hostname.slice(1, -1);
  return `${network}/${ipv6PrefixLength}`;
}

/** The eight 16-bit groups of a valid IPv6 address (an IPv4 tail allowed). */
function ipv6Groups(address: string): number[] | undefined {
  let text = address;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number);
    tail.push((a! << 8) | b!, (c! << 8) | d!);
    text = text.slice(0, -v4[1]!.length);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const double = text.indexOf("::");
  let groups: number[];
  if (double === -1) {
    groups = [...parse(text), ...tail];
  } else {
    const head = parse(text.slice(0, double));
    const rest = parse(text.slice(double + 2));
    const zeros = 8 - head.length - rest.length - tail.length;
    if (zeros < 0) return undefined;
    groups = [...head, ...Array<number>(zeros).fill(0), ...rest, ...tail];
  }
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}
