# Lethe's image: the static lethe binary on an empty image, run as an unprivileged user by
# number. Nothing is compiled inside Docker and no base image is pulled, so it builds on a
# machine with no registry. scripts/docker-image builds the binary and the build context,
# then this image:
#
#   CGO_ENABLED=0 go build -tags timetzdata -trimpath -ldflags="-s -w" -o .build/image/lethe ./cmd/lethe
#   mkdir -p .build/image/rootfs/data .build/image/rootfs/certs .build/image/rootfs/secrets \
#            .build/image/rootfs/sim .build/image/rootfs/tmp
#   chmod 0700 .build/image/rootfs/data && chmod 1777 .build/image/rootfs/tmp
#   docker build -f Dockerfile -t lethe:local .build/image
#
# What the binary needs at run time, and where it comes from here:
# - no C library: CGO_ENABLED=0 links it statically;
# - time zone data for --timezone (LETHE_TIMEZONE): -tags timetzdata embeds Go's copy of
#   the database in the binary (there is no /usr/share/zoneinfo in an empty image);
# - no CA roots: every certificate Lethe checks comes from the cluster's own CA
#   ('lethe cluster certs'), given by file;
# - directories the user 65532 owns: /data (the data directory, a volume), the mount
#   points /certs, /secrets and /sim (so that named volumes mounted there belong to the
#   user), and /tmp (mode 1777).
#
# A library with a registry can start from Google's distroless static image instead:
# the same empty base plus CA roots, /etc/passwd with the user nonroot (65532), time zone
# data and /tmp, rebuilt when Debian fixes something in it. Pin it by digest:
#
#   FROM gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
#   COPY --chown=65532:65532 rootfs/ /
#   COPY lethe /lethe
#   (then the same ENV, USER, VOLUME, EXPOSE, ENTRYPOINT and CMD as below)
FROM scratch
COPY --chown=65532:65532 rootfs/ /
COPY lethe /lethe
ENV LETHE_DATA=/data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# 8443 staff HTTPS, 4222 NATS for kiosks and auditors (TLS), 6222 the cluster's routes
EXPOSE 8443 4222 6222
ENTRYPOINT ["/lethe"]
CMD ["serve"]
