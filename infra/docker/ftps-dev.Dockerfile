# A development FTPS partner for docker compose: vsftpd with forced TLS, session reuse
# required (its default) and a self-signed certificate made at start. The same settings
# as the test bed's vsftpd (tests/src/ftp), so local runs meet what tests prove.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends vsftpd openssl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/vsftpd/empty /srv/ftp/incoming /srv/ftp/reports \
 && useradd --home-dir /srv/ftp --shell /bin/bash partner \
 && echo 'partner:partner-dev-password' | chpasswd \
 && chown -R partner /srv/ftp
COPY infra/docker/vsftpd-dev.conf /etc/vsftpd.conf
EXPOSE 21 21100-21110
CMD ["sh", "-c", "[ -f /etc/ssl/private/ftps.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=ftps -addext subjectAltName=DNS:ftps,DNS:localhost -keyout /etc/ssl/private/ftps.pem -out /etc/ssl/private/ftps.pem; exec vsftpd /etc/vsftpd.conf"]
