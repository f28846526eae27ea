# Sourced (not run) by the scripts that put nginx and HAProxy beside tailwater proxy in
# front of one backend (scripts/bench-proxy.sh, scripts/callgrind-proxy.sh,
# scripts/netns-proxy.sh): the peers' configurations and the wait for a listener, written
# once.
#
#   peer_configs DIR BACKEND_PORT PROXY_PORT WORKERS [TLS_DIR] [SHED_LIMIT]
#       writes DIR/nginx/nginx.conf and DIR/haproxy/haproxy.cfg: both listen on
#       127.0.0.1:PROXY_PORT and keep up to 256 idle connections to 127.0.0.1:BACKEND_PORT;
#       WORKERS processes (nginx; one runs without a master process) or threads (HAProxy).
#       With TLS_DIR (holding server.pem, server.key; "" for none), both terminate TLS
#       (ALPN http/1.1; nginx with a shared session cache, as its documentation advises).
#       With SHED_LIMIT, each admits at most that many requests at once and answers the
#       rest 503 at once (nginx: `limit_conn` per client address; HAProxy: the server's
#       `maxconn` with a 1 ms queue timeout). To run both at once, call it twice with two
#       directories and two ports.
#   floor_config DIR BACKEND_PORT PROXY_PORT WORKERS
#       writes DIR/floor/haproxy.cfg: HAProxy in `mode tcp` on 127.0.0.1:PROXY_PORT, one
#       backend connection per client connection, no HTTP parsing and no fields added. It
#       is the floor of what any proxy costs here (the same four syscalls a request, and
#       nothing else; the backend even gets less to parse): what an HTTP proxy could reach
#       if its own work were free. bench-proxy.sh runs it beside the HTTP proxies (FLOOR=1).
#   haproxy_head WORKERS MODE
#       prints HAProxy's global section and the top of its defaults (MODE http or tcp,
#       the connect, client and server timeouts) for peer_configs and floor_config.
#   nginx_head DIR WORKERS
#       prints the top of an nginx.conf whose files live under DIR/nginx, up to and inside
#       its `http {` block (no access log, long keep-alive); the caller adds its servers and
#       the closing brace. WORKERS processes; one runs without a master process.
#   release_binaries ROOT
#       sets TAILWATER and BACKEND, unless the caller gave them, to the release builds of
#       `tailwater` and `tailwater-bench-backend` in ROOT's cargo target directory.
#   bench_workdir PREFIX
#       makes a fresh directory in $tmp and an empty $pids array; on exit every pid in $pids
#       is stopped and the directory removed.
#
#   nginx_tls_origin DIR WORKERS PORT TLS_DIR
#       writes DIR/nginx/nginx.conf for an nginx that answers every request 200 "ok" over
#       TLS on 127.0.0.1:PORT (TLS_DIR holds server.pem and server.key): the load
#       generator's HTTPS target.
#
#   wait_http URL [TRIES] [CA_FILE] [LOGS...]
#       polls URL every 0.1 s until it answers 2xx, at most TRIES times (default 300);
#       returns 1 (after saying so on stderr, with the last lines of each LOGS file) when
#       it never does.

nginx_head() { # dir workers
    local dir=$1 workers=$2 process="worker_processes $2;"
    [ "$workers" = 1 ] && process="master_process off;
worker_processes 1;"
    cat <<EOF
$process
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    keepalive_requests 10000000;
EOF
}

nginx_tls_origin() { # dir workers port tls_dir
    local dir=$1 port=$3 tls=$4
    mkdir -p "$dir/nginx"
    {
        nginx_head "$dir" "$2"
        cat <<EOF
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $tls/server.pem;
        ssl_certificate_key $tls/server.key;
        location / { return 200 "ok"; }
    }
}
EOF
    } >"$dir/nginx/nginx.conf"
}

peer_configs() { # dir backend_port proxy_port workers [tls_dir] [shed_limit]
    local dir=$1 backend=$2 port=$3 workers=$4 tls=${5:-} shed=${6:-}
    local listen="listen 127.0.0.1:$port;" bind="bind 127.0.0.1:$port"
    local zone="" limit="" server="server s1 127.0.0.1:$backend" queue=5s
    mkdir -p "$dir/nginx" "$dir/haproxy"
    if [ -n "$tls" ]; then
        listen="listen 127.0.0.1:$port ssl; ssl_certificate $tls/server.pem; ssl_certificate_key $tls/server.key; ssl_session_cache shared:SSL:10m;"
        cat "$tls/server.pem" "$tls/server.key" >"$dir/haproxy/cert.pem"
        bind="$bind ssl crt $dir/haproxy/cert.pem alpn http/1.1"
    fi
    if [ -n "$shed" ]; then
        zone="limit_conn_zone \$binary_remote_addr zone=perclient:1m;"
        limit="limit_conn perclient $shed; limit_conn_status 503;"
        server="$server maxconn $shed"
        queue=1ms
    fi
    # The forwarding fields tailwater adds by default (`X-Forwarded-For` and `Forwarded`
    # with for, proto and host), so that every proxy hands the backend the same work
    # (session 21: without them the backend spent 23 % more instructions per request behind
    # tailwater). PEER_FORWARDED=0 leaves them out.
    local fwd_nginx="" fwd_haproxy="" fwd_haproxy_be=""
    if [[ ${PEER_FORWARDED:-1} != 0 ]]; then
        fwd_nginx='proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\"$http_host\"";'
        fwd_haproxy='option forwardfor'
        fwd_haproxy_be='http-request set-header Forwarded "for=%[src];proto=%[ssl_fc,iif(https,http)];host=\"%[req.hdr(host)]\""'
    fi
    {
        nginx_head "$dir" "$workers"
        cat <<EOF
    $zone
    upstream backend {
        server 127.0.0.1:$backend;
        keepalive 256;
    }
    server {
        $listen
        location / {
            $limit
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $fwd_nginx
        }
    }
}
EOF
    } >"$dir/nginx/nginx.conf"
    {
        haproxy_head "$workers" http
        cat <<EOF
    timeout queue $queue
    option http-keep-alive
    http-reuse always
    $fwd_haproxy
frontend fe
    $bind
    default_backend be
backend be
    $server
    $fwd_haproxy_be
EOF
    } >"$dir/haproxy/haproxy.cfg"
}

haproxy_head() { # workers mode: HAProxy's global section and the top of its defaults
    cat <<EOF
global
    nbthread $1
    maxconn 4000
defaults
    mode $2
    timeout connect 5s
    timeout client 60s
    timeout server 60s
EOF
}

floor_config() { # dir backend_port proxy_port workers
    local dir=$1 backend=$2 port=$3 workers=$4
    mkdir -p "$dir/floor"
    {
        haproxy_head "$workers" tcp
        cat <<EOF
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    server s1 127.0.0.1:$backend
EOF
    } >"$dir/floor/haproxy.cfg"
}

wait_http() { # url [tries] [ca_file] [logs...]
    local url=$1 tries=${2:-300} ca=()
    [ -n "${3:-}" ] && ca=(--cacert "$3")
    shift $(($# < 3 ? $# : 3))
    for _ in $(seq 1 "$tries"); do
        curl -fsS "${ca[@]}" -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$(basename "$0"): $url did not come up" >&2
    [ $# -gt 0 ] && tail -n 5 "$@" >&2
    return 1
}

release_binaries() { # root: sets TAILWATER and BACKEND, unless given, to the release builds
    local target_dir
    if [ -z "${TAILWATER:-}" ] || [ -z "${BACKEND:-}" ]; then
        target_dir=$(cd "$1" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
        TAILWATER=${TAILWATER:-$target_dir/release/tailwater}
        BACKEND=${BACKEND:-$target_dir/release/tailwater-bench-backend}
    fi
}

bench_workdir() { # prefix: a fresh directory in $tmp and an empty $pids; on exit the pids are
    # stopped and the directory removed
    tmp=$(mktemp -d -t "$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
