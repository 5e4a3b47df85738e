#!/usr/bin/env bash
# Push this host's Docker (or Podman) containers to a Roost hub, for machines that cannot run the agent.
#
#   ROOST_HUB=https://hub.lan:8765 ROOST_PUSH_TOKEN_FILE=/etc/roost/push-token roost-docker-push.sh
#
# Needs bash, the docker CLI, curl and jq. Sends the same docker state the
# agent sends (see docs/integrations/docker.md), secret values masked here,
# before anything leaves this host; the hub masks once more.
#
# Environment:
#   ROOST_HUB              the hub's URL (required)
#   ROOST_PUSH_TOKEN       the node's push token (rpt_...), or
#   ROOST_PUSH_TOKEN_FILE  a file holding it (better: not in the environment of every process)
#   ROOST_CA               CA certificate for the hub's HTTPS (the hub's /api/v1/ca.pem), if not in the system store
#   ROOST_SECRET_PATTERN   names whose values are masked (default PASS|SECRET|TOKEN|KEY|PRIVATE|CREDENTIAL, case-insensitive)
#   ROOST_PUSH_INTERVAL    seconds between pushes, shown by the hub (default 60)
#   ROOST_PUSH_STATS       0 to skip `docker stats` (it takes a second or two)
#   ROOST_DRY_RUN          1 to print the JSON instead of sending it
#   DOCKER_HOST            as for the docker CLI
set -euo pipefail

me="roost-docker-push"
die() { echo "$me: $1" >&2; exit "${2:-1}"; }

command -v jq >/dev/null 2>&1 || die "jq is missing — install it (apt-get install jq, apk add jq, opkg install jq) and run again" 127
command -v curl >/dev/null 2>&1 || die "curl is missing — install it (apt-get install curl) and run again" 127
command -v docker >/dev/null 2>&1 || die "the docker CLI is missing — install it, or use podman-docker" 127

dry_run="${ROOST_DRY_RUN:-0}"
hub="${ROOST_HUB:-}"
token="${ROOST_PUSH_TOKEN:-}"
if [ -z "$token" ] && [ -n "${ROOST_PUSH_TOKEN_FILE:-}" ]; then
  [ -r "$ROOST_PUSH_TOKEN_FILE" ] || die "cannot read the token file $ROOST_PUSH_TOKEN_FILE"
  token="$(tr -d ' \r\n' < "$ROOST_PUSH_TOKEN_FILE")"
fi
if [ "$dry_run" != 1 ]; then
  [ -n "$hub" ] || die "set ROOST_HUB to the hub's URL, e.g. https://hub.lan:8765"
  [ -n "$token" ] || die "set ROOST_PUSH_TOKEN or ROOST_PUSH_TOKEN_FILE (an admin creates one with POST /api/v1/push-tokens)"
fi
pattern="${ROOST_SECRET_PATTERN:-PASS|SECRET|TOKEN|KEY|PRIVATE|CREDENTIAL}"
interval="${ROOST_PUSH_INTERVAL:-60}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

docker info --format '{{json .}}' > "$tmp/info.json" 2> "$tmp/err" || die "docker info failed: $(tr '\n' ' ' < "$tmp/err")"
docker version --format '{{json .}}' > "$tmp/version.json" 2>/dev/null || echo '{}' > "$tmp/version.json"
docker ps -a --no-trunc --format '{{json .}}' > "$tmp/ps.jsonl"
ids="$(jq -r '.ID' "$tmp/ps.jsonl")"
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086 # one argument per id
  docker inspect $ids > "$tmp/inspect.json"
else
  echo '[]' > "$tmp/inspect.json"
fi
if [ "${ROOST_PUSH_STATS:-1}" != 0 ] && [ -n "$ids" ]; then
  docker stats --no-stream --no-trunc --format '{{json .}}' > "$tmp/stats.jsonl" 2>/dev/null || : > "$tmp/stats.jsonl"
else
  : > "$tmp/stats.jsonl"
fi
docker images --no-trunc --format '{{json .}}' > "$tmp/images.jsonl" 2>/dev/null || : > "$tmp/images.jsonl"
docker volume ls --format '{{json .}}' > "$tmp/volumes.jsonl" 2>/dev/null || : > "$tmp/volumes.jsonl"

jq -n \
  --slurpfile info "$tmp/info.json" \
  --slurpfile version "$tmp/version.json" \
  --slurpfile inspect "$tmp/inspect.json" \
  --slurpfile ps <(jq -s . "$tmp/ps.jsonl") \
  --slurpfile stats <(jq -s . "$tmp/stats.jsonl") \
  --slurpfile images <(jq -s . "$tmp/images.jsonl") \
  --slurpfile volumes <(jq -s . "$tmp/volumes.jsonl") \
  --arg pattern "$pattern" \
  --argjson interval "$interval" \
  --argjson now "$(date +%s)" '
  def mask: "********";
  def secret: test($pattern; "i");
  # user:password@ inside URLs, whatever the name.
  def mask_url: if type == "string" then gsub("(?<h>[a-zA-Z][a-zA-Z0-9+.-]*://[^\\s:/@]*:)[^\\s@/]+@"; "\(.h)********@") else . end;
  def mask_text: mask_url
    | gsub("(?<f>(^|[^A-Za-z0-9_-])--?[A-Za-z0-9_.-]*(" + $pattern + ")[A-Za-z0-9_.-]*)(?<s>\\s+|=)[^\\s'"'"'\";&|-][^\\s'"'"'\";&|]*"; "\(.f)\(.s)********"; "i")
    | gsub("(?<n>[A-Za-z0-9_.-]*(" + $pattern + ")[A-Za-z0-9_.-]*)=[^\\s'"'"'\";&|]+"; "\(.n)=********"; "i");
  def mask_args: if type == "array" then
      reduce .[] as $a ({out: [], hide: false};
        if .hide then {out: (.out + [mask]), hide: false}
        elif ($a | test("^-[^=]*$")) and ($a | ltrimstr("-") | ltrimstr("-") | secret) then {out: (.out + [$a]), hide: true}
        elif ($a | test("^-[^=]*=.")) and ($a | split("=")[0] | ltrimstr("-") | ltrimstr("-") | secret) then {out: (.out + [($a | split("=")[0]) + "=" + mask]), hide: false}
        else {out: (.out + [$a | mask_text]), hide: false} end) | .out
    else [] end;
  def when: if type == "string" and (startswith("0001-") | not) then (try (sub("\\.[0-9]+"; "") | sub("(?<z>[+-][0-9][0-9]:[0-9][0-9])$"; "Z") | fromdateiso8601) catch null) else null end;
  def bytes: if type != "string" then null else
      (capture("^\\s*(?<n>[0-9.]+)\\s*(?<u>[A-Za-z]*)") // null) as $m
      | if $m == null then null else ($m.n | tonumber) * ({"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
          "KiB": 1024, "MiB": 1048576, "GiB": 1073741824, "TiB": 1099511627776}[$m.u] // 1) | floor end end;
  def pair($i): split(" / ") | map(bytes) | .[$i];
  def ports($c): ($c.NetworkSettings.Ports // {}) as $live
    | (if ($live | length) > 0 then $live
       else (($c.Config.ExposedPorts // {}) | with_entries(.value = null)) + ($c.HostConfig.PortBindings // {}) end)
    | to_entries | map(.key as $k | ($k | split("/")) as $kp
      | if (.value // []) | length == 0 then [{host_ip: null, host_port: null, container_port: ($kp[0] | tonumber? // $kp[0]), protocol: ($kp[1] // "tcp")}]
        else .value | map({host_ip: (if (.HostIp // "") == "" then null else .HostIp end),
                           host_port: (if (.HostPort // "") == "" then null else (.HostPort | tonumber? // .HostPort) end),
                           container_port: ($kp[0] | tonumber? // $kp[0]), protocol: ($kp[1] // "tcp")}) end) | add // [];
  ($ps[0] | map({key: .ID, value: .Status}) | from_entries) as $status
  | ($stats[0] | map({key: .ID, value: .}) | from_entries) as $st
  | ($info[0]) as $i | ($version[0]) as $v
  | {
      v: 1, type: "report", collected_at: $now, interval: $interval,
      data: {docker: {
        engine: ({
          kind: (if ([$v.Components[]?.Name] | map(ascii_downcase) | any(test("podman"))) then "podman" else "docker" end),
          version: ($v.Server.Version // $i.ServerVersion), api_version: $v.Server.ApiVersion,
          os: $i.OperatingSystem, os_type: $i.OSType, arch: $i.Architecture, kernel: $i.KernelVersion, name: $i.Name,
          storage_driver: $i.Driver, logging_driver: $i.LoggingDriver, cgroup_driver: $i.CgroupDriver, cgroup_version: $i.CgroupVersion,
          root_dir: $i.DockerRootDir, cpus: $i.NCPU, mem_total_bytes: $i.MemTotal, containers: $i.Containers,
          containers_running: $i.ContainersRunning, containers_paused: $i.ContainersPaused, containers_stopped: $i.ContainersStopped,
          images: $i.Images, endpoint: "push"
        } | with_entries(select(.value != null and .value != ""))),
        containers: [$inspect[0][] as $c
          | ($c.Config.Labels // {}) as $labels
          | ($c.Config.Image // "") as $ref
          | ({
              id: $c.Id, short_id: $c.Id[0:12], name: ($c.Name | ltrimstr("/")),
              image: $ref, image_id: $c.Image,
              state: ($c.State.Status // "unknown"), status: ($status[$c.Id] // $c.State.Status // ""),
              created: ($c.Created | when), started_at: ($c.State.StartedAt | when), finished_at: ($c.State.FinishedAt | when),
              restart_count: ($c.RestartCount // 0), restart_policy: ($c.HostConfig.RestartPolicy.Name // "no" | if . == "" then "no" else . end),
              exit_code: $c.State.ExitCode, oom_killed: ($c.State.OOMKilled // false),
              ports: ports($c),
              networks: [($c.NetworkSettings.Networks // {}) | to_entries[] | {name: .key,
                ip: (if (.value.IPAddress // "") == "" then null else .value.IPAddress end),
                ipv6: (if (.value.GlobalIPv6Address // "") == "" then null else .value.GlobalIPv6Address end)}],
              network_mode: $c.HostConfig.NetworkMode,
              mounts: [($c.Mounts // [])[] | {type: .Type, name: (.Name // null), source: (.Source // null), destination: .Destination, rw: (.RW // false)}],
              env: [($c.Config.Env // [])[] | (index("=")) as $eq
                | if $eq == null then {key: ., value: null, masked: false}
                  else .[0:$eq] as $k | .[$eq + 1:] as $val
                    | if ($k | secret) then {key: $k, value: mask, masked: true}
                      else ($val | mask_url) as $m | {key: $k, value: $m, masked: ($m != $val)} end end],
              command: ($c.Config.Cmd | mask_args), entrypoint: ($c.Config.Entrypoint | mask_args),
              labels: ($labels | with_entries(if (.key | secret) and ((.value // "") != "") then .value = mask else .value |= mask_text end)),
              compose_project: ($labels["com.docker.compose.project"] // $labels["io.podman.compose.project"]),
              compose_service: $labels["com.docker.compose.service"]
            }
            + (if ($ref | contains("@")) then {image_name: ($ref | split("@")[0]), image_tag: null}
               elif ($ref | test(":[^/:]+$")) then {image_name: ($ref | sub(":[^/:]+$"; "")), image_tag: ($ref | capture(":(?<t>[^/:]+)$").t)}
               else {image_name: $ref, image_tag: "latest"} end)
            + (if $c.State.Health.Status? and $c.State.Health.Status != "none" then {health: $c.State.Health.Status, health_failing_streak: ($c.State.Health.FailingStreak // 0)} else {} end)
            + (if ($c.HostConfig.Memory // 0) > 0 then {mem_limit_bytes: $c.HostConfig.Memory} else {} end)
            + (if $st[$c.Id] then {stats: ($st[$c.Id] | {
                  cpu_percent: (.CPUPerc | rtrimstr("%") | tonumber? ),
                  mem_used_bytes: (.MemUsage | pair(0)), mem_limit_bytes: (.MemUsage | pair(1)),
                  mem_percent: (.MemPerc | rtrimstr("%") | tonumber?),
                  net_rx_bytes: (.NetIO | pair(0)), net_tx_bytes: (.NetIO | pair(1)),
                  block_read_bytes: (.BlockIO | pair(0)), block_write_bytes: (.BlockIO | pair(1)),
                  pids: (.PIDs | tonumber?)
                } | with_entries(select(.value != null)))} else {} end)
          )],
        images: [$images[0][] | {id: .ID, tags: (if .Repository == "<none>" then [] else [.Repository + ":" + .Tag] end),
                 size_bytes: (.Size | bytes), dangling: (.Repository == "<none>" and .Tag == "<none>")}],
        volumes: [$volumes[0][] | {name: .Name, driver: .Driver, mountpoint: .Mountpoint, scope: .Scope}],
        events: []
      }}
    }' > "$tmp/report.json"

if [ "$dry_run" = 1 ]; then
  cat "$tmp/report.json"
  exit 0
fi

curl_args=(-sS --max-time 30 -X POST -H "Content-Type: application/json" --data-binary @"$tmp/report.json" -o "$tmp/answer" -w '%{http_code}')
if [ -n "${ROOST_CA:-}" ]; then curl_args+=(--cacert "$ROOST_CA"); fi
# The token goes to curl through a pipe (-H @file), never on a command line `ps` could show.
code="$(curl "${curl_args[@]}" -H @<(printf 'Authorization: Bearer %s\n' "$token") "${hub%/}/api/v1/push/docker")" \
  || die "cannot reach the hub at $hub (curl exit $?)"
if [ "$code" != 200 ]; then
  message="$(jq -r '.error // empty' "$tmp/answer" 2>/dev/null || true)"
  die "the hub answered $code: ${message:-$(head -c 300 "$tmp/answer")}"
fi
jq -r '"pushed \(.containers) containers to node \(.node_id) (report \(.seq))"' "$tmp/answer"
