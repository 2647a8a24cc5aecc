/** One authentication challenge from a WWW-Authenticate header (RFC 9110 §11.6.1). */
export interface Challenge {
  /** The auth scheme, lower-cased: `bearer`, `basic`, ... */
  scheme: string;
  /** Auth parameters by lower-cased name (`realm`, `service`, `scope`, `error`, ...). */
  params: Record<string, string>;
  /** A token68 credential hint instead of parameters, when the challenge carried one. */
  token68?: string;
}

const tchar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const token68char = /[-._~+/0-9A-Za-z]/;

/**
 * Parses a WWW-Authenticate header value into its challenges, e.g.
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`
 * or `Basic realm="x", Bearer realm="y"`. Lenient with what registries send:
 * unknown characters are skipped, an unterminated quoted string runs to the end,
 * and unquoted parameter values may contain `/` and `:`.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const s = header;
  const challenges: Challenge[] = [];
  let i = 0;

  const skip = (chars: RegExp): void => {
    while (i < s.length && chars.test(s[i]!)) i++;
  };
  const readToken = (chars: RegExp): string => {
    const start = i;
    while (i < s.length && chars.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    let out = '';
    i++; // opening quote
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++;
      out += s[i];
      i++;
    }
    i++; // closing quote (or past the end)
    return out;
  };
  const readValue = (): string => {
    if (s[i] === '"') return readQuoted();
    const start = i;
    while (i < s.length && s[i] !== ',' && !/\s/.test(s[i]!)) i++;
    return s.slice(start, i);
  };

  while (i < s.length) {
    skip(/[\s,]/);
    const scheme = readToken(tchar);
    if (scheme === '') {
      if (i < s.length) i++; // not a token: skip the stray character
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    skip(/[ \t]/);

    // token68 (`Negotiate abc+/def==`): a credential-like word followed by the end or a comma.
    const start = i;
    if (readToken(token68char) !== '') {
      skip(/=/);
      const end = i;
      skip(/[ \t]/);
      if (i >= s.length || s[i] === ',') {
        challenge.token68 = s.slice(start, end);
        continue;
      }
      i = start;
    }

    // #auth-param: name = value, separated by commas; a name without `=` starts the next challenge.
    while (i < s.length) {
      skip(/[\s,]/);
      const before = i;
      const name = readToken(tchar);
      if (name === '') break;
      skip(/[ \t]/);
      if (s[i] !== '=') {
        i = before; // the next challenge's scheme
        break;
      }
      i++;
      skip(/[ \t]/);
      challenge.params[name.toLowerCase()] = readValue();
      skip(/[ \t]/);
      if (i < s.length && s[i] !== ',') break;
    }
  }
  return challenges;
}

/** The first Bearer challenge that names a realm, as the token request needs it. */
export function bearerChallenge(challenges: Challenge[]): { realm: string; service: string | undefined; scope: string | undefined } | undefined {
  const c = challenges.find((x) => x.scheme === 'bearer' && x.params.realm);
  if (!c) return undefined;
  return { realm: c.params.realm!, service: c.params.service, scope: c.params.scope };
}
