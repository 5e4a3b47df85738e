# Roost hub and agent in one image, from the single executable.
#   .venv/bin/python scripts/build-binary && docker build -t roost:0.1.0 .
#   hub:   docker run -d -p 8765:8765 -v roost-hub:/data roost:0.1.0 hub --data-dir /data
#   agent: the Compose service `roost join-token create` prints (docs/install.md)
FROM debian:bookworm-slim
ARG ARCH=x86_64
COPY dist/roost-linux-${ARCH} /usr/local/bin/roost
RUN chmod 0755 /usr/local/bin/roost \
 && useradd --system --user-group --home-dir /data --shell /usr/sbin/nologin roost \
 && install -d -o roost -g roost -m 0700 /data
USER roost
ENV ROOST_DATA_DIR=/data
VOLUME /data
EXPOSE 8765
# PyInstaller unpacks into $TMPDIR on each start: give it a writable place on a read-only root.
ENV TMPDIR=/data
ENTRYPOINT ["/usr/local/bin/roost"]
CMD ["hub", "--data-dir", "/data"]
