/* LD_PRELOAD shim for Debian 12's ftpd-ssl (linux-ftpd-ssl 0.17.36+really0.17-2).
 * That build only loads `-z cert=` / `-z key=` (or the default /etc/ftpd-ssl/ftpd.pem) when its
 * ssl_active_flag is already set, which is never the case at start-up (it is set after the first
 * successful SSL_accept), so every AUTH TLS handshake fails with "no shared cipher".
 * This loads $FTPD_SSL_CERT (chain) and $FTPD_SSL_KEY into the SSL_CTX right before SSL_new;
 * the rest of the server (AUTH/PBSZ/PROT, data-channel TLS, PASV) is the unmodified package.
 * Built by scripts/setup.d/ftp-servers.sh: gcc -shared -fPIC -o certshim.so ftpd-ssl-certshim.c -ldl -lssl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <openssl/ssl.h>

SSL *SSL_new(SSL_CTX *ctx) {
  static SSL *(*real)(SSL_CTX *);
  if (!real) real = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new");
  if (ctx && !SSL_CTX_get0_certificate(ctx)) {
    const char *c = getenv("FTPD_SSL_CERT"), *k = getenv("FTPD_SSL_KEY");
    if (c) SSL_CTX_use_certificate_chain_file(ctx, c);
    if (c || k) SSL_CTX_use_PrivateKey_file(ctx, k ? k : c, SSL_FILETYPE_PEM);
  }
  return real(ctx);
}
