/**
 * A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with openssl.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './tools.ts';

/** Paths of the PEM files written into `dir`, and the CA certificate's PEM text. */
export interface TlsFiles {
  /** CA certificate (PEM), to trust in clients. */
  caCert: string;
  /** Server certificate (PEM), SAN IP:127.0.0.1 and DNS:localhost. */
  cert: string;
  /** Server private key (PEM). */
  key: string;
  caPem: string;
  /** A directory holding only ca.crt, for skopeo's --cert-dir / podman's --cert-dir. */
  certDir: string;
}

/** Makes a CA and a server certificate signed by it in `dir` (valid 2 days). */
export async function makeTls(dir: string): Promise<TlsFiles> {
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const cert = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  await run('openssl', ['req', '-x509', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=tender test CA']);
  await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=localhost']);
  await writeFile(
    ext,
    ['basicConstraints = CA:FALSE', 'keyUsage = digitalSignature, keyEncipherment', 'extendedKeyUsage = serverAuth', 'subjectAltName = IP:127.0.0.1, DNS:localhost', ''].join('\n'),
  );
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  const caPem = await readFile(caCert, 'utf8');
  // A separate folder: containers tools treat *.key there as client keys and want a matching *.cert.
  const certDir = join(dir, 'client-certs');
  await mkdir(certDir, { recursive: true });
  await writeFile(join(certDir, 'ca.crt'), caPem);
  return { caCert, cert, key, caPem, certDir };
}
