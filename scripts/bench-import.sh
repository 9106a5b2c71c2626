#!/usr/bin/env bash
# bench-import.sh: `lethe items import` end to end, at two revisions, in one run.
#
#   scripts/bench-import.sh [ROWS] [REV...]      default: 100000 rows, HEAD~ and the work tree
#   scripts/bench-import.sh 100000 . b9c024c .   as in the README: the work tree, the revision
#                                                before bulk import, the work tree again
#
# For each revision: build lethe from it (git archive into a temporary directory; "." is
# the work tree as it is), make a fresh data directory with an administrator, start
# `lethe serve` (fsync before every acknowledgement, as by default), import one generated
# CSV of ROWS items, and print the wall time and items a second. Then import the same file
# again, which must append nothing. Everything lives under a temporary directory, removed
# at the end; the servers listen on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-100000}
shift || true
revs=("$@")
[ ${#revs[@]} -gt 0 ] || revs=("HEAD~" ".")

tmp=$(mktemp -d)
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

csv=$tmp/items.csv
awk -v n="$rows" 'BEGIN {
	print "barcode,title,collection,branch,replacement_cents"
	split("fiction reference children periodicals", coll, " ")
	split("main north south", br, " ")
	for (i = 1; i <= n; i++)
		printf "B%08d,\"Title %d, a book\",%s,%s,%d\n", i, i, coll[i % 4 + 1], br[i % 3 + 1], 1000 + i % 5000
}' >"$csv"

port=18480
for rev in "${revs[@]}"; do
	src=$tmp/src-$port
	mkdir -p "$src"
	if [ "$rev" = "." ]; then
		name="work tree ($(git rev-parse --short HEAD)+)"
		git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
	else
		name="$rev ($(git rev-parse --short "$rev"))"
		git archive "$rev" | tar -x -C "$src"
	fi
	(cd "$src" && go build -o "$tmp/lethe-$port" ./cmd/lethe)
	bin=$tmp/lethe-$port
	data=$tmp/data-$port
	echo "bench password for import" | "$bin" staff add bench --role administrator --data "$data" >/dev/null
	"$bin" serve --data "$data" --http "127.0.0.1:$port" --nats-listen off --log-level error >"$tmp/serve-$port.log" 2>&1 &
	server=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	export LETHE_USER=bench LETHE_PASSWORD="bench password for import"
	for pass in first again; do
		start=$(date +%s.%N)
		out=$("$bin" items import --server "http://127.0.0.1:$port" "$csv" 2>&1 | tail -1)
		end=$(date +%s.%N)
		awk -v s="$start" -v e="$end" -v n="$rows" -v name="$name" -v pass="$pass" -v out="$out" \
			'BEGIN { d = e - s; printf "%-28s %-6s %9.1f s %9.0f items/s   %s\n", name, pass, d, n / d, out }'
	done
	kill "$server"
	wait "$server" 2>/dev/null || true
	server=
	port=$((port + 1))
done
