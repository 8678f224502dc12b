# Shared by scripts/bench-scaling and scripts/profile-call (source it): start a real
# `airlock serve` pinned to some cores, and give it an agent allowed to call `hello.greet`.

# start_host BIN CPUS PORT DATA_DIR LOG [serve args...]: starts the host, sets `server_pid`,
# returns once `/healthz` answers (prints the log and fails if the host exits first).
start_host() {
  local bin=$1 cpus=$2 port=$3 data=$4 log=$5
  shift 5
  mkdir -p "$data"
  taskset -c "$cpus" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" "$@" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "the host on port $port did not answer within 60 s (log: $log)" >&2
  return 1
}

# hello_agent BIN PORT DATA_DIR NAME: creates agent NAME allowed `hello.greet`; prints its token.
hello_agent() {
  local bin=$1 port=$2 data=$3 name=$4
  AIRLOCK_URL="http://127.0.0.1:$port" AIRLOCK_DATA_DIR="$data" "$bin" agent create "$name" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
  AIRLOCK_URL="http://127.0.0.1:$port" AIRLOCK_DATA_DIR="$data" "$bin" tuple write "agent:$name" can_use tool:hello.greet >/dev/null
}
