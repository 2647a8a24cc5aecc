/** HTTP Basic credentials (RFC 7617). */

export interface BasicCredentials {
  username: string;
  password: string;
}

const basic = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Far above any real credentials; Node caps all headers at 16 KiB anyway. */
const maxLength = 8192;

/**
 * The user name and password of a `Basic` Authorization header (the scheme
 * in any case; the password may contain `:`). Undefined for a missing header,
 * another scheme, bad base64 or UTF-8, no `:`, an empty user name, or control
 * characters in the user name.
 */
export function parseBasic(header: string | undefined): BasicCredentials | undefined {
  if (!header || header.length > maxLength) return undefined;
  const encoded = basic.exec(header)?.[1];
  if (!encoded || encoded.length % 4 === 1) return undefined;
  const bytes = Buffer.from(encoded, 'base64');
  // Buffer.from skips what it cannot decode: insist the text was canonical base64.
  if (bytes.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '')) return undefined;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  const username = text.slice(0, colon);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(username)) return undefined;
  return { username, password: text.slice(colon + 1) };
}
