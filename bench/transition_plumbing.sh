#!/usr/bin/env bash
# The floor of one CLI transition (bench/bench_startup.py): the same kind of commit a
# `logist job suspend|resume` makes, by a shell script and 9 git plumbing processes.
# Reads the record at the tip of REF, changes its state FROM -> TO and its updated_at, appends
# one history line, commits both files under .logist/jobs/ID/ on top of the tip and moves REF by
# compare-and-swap (update-ref NEW OLD). No checks, no lock, no redaction: a floor.
#
#   bench/transition_plumbing.sh REPO ID REF FROM TO
set -euo pipefail
repo=$1 id=$2 ref=$3 from=$4 to=$5
cd "$repo"
rec=".logist/jobs/$id"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tip=$(git rev-parse --verify "$ref^{commit}")                                   # 1
git cat-file blob "$tip:$rec/manifest.json" >"$tmp/manifest.json"                # 2
git cat-file blob "$tip:$rec/history.jsonl" >"$tmp/history.jsonl"                # 3
now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sed -i -e "s/\"state\": \"$from\"/\"state\": \"$to\"/" \
       -e "s/\"updated_at\": \"[^\"]*\"/\"updated_at\": \"$now\"/" "$tmp/manifest.json"
printf '{"event":"transition","from":"%s","run":1,"t":"%s","to":"%s"}\n' "$from" "$now" "$to" \
    >>"$tmp/history.jsonl"
{ read -r m; read -r h; } < <(git hash-object -w "$tmp/manifest.json" "$tmp/history.jsonl")  # 4
export GIT_INDEX_FILE="$tmp/index"
git read-tree "$tip"                                                             # 5
printf '100644 %s\t%s\n100644 %s\t%s\n' "$h" "$rec/history.jsonl" "$m" "$rec/manifest.json" \
    | git update-index --index-info                                              # 6
tree=$(git write-tree)                                                           # 7
new=$(git commit-tree "$tree" -p "$tip" -m "$id: $from -> $to")                  # 8
git update-ref "$ref" "$new" "$tip"                                              # 9
