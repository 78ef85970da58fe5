#!/bin/sh
# Check that includes only point down the layers of DESIGN.md ("layers that only call down"):
# every C file of a layer folder may include its own layer and the layers listed for it below,
# nothing else. tests/ and tools/ are exempt. Prints file:line and the forbidden include, and
# fails, for each breach; also fails for a C file outside every layer folder.
#
#   layer     folder         may include
#   cli       host/cli       train tune model ops runtime dataset common
#   train     host/train     model ops runtime dataset common
#   tune      host/tune      ops runtime common
#   model     model          ops runtime common
#   ops       host/ops       runtime common
#   runtime   host/runtime   common
#   dataset   dataset        common
#   common    common         (none)
#
# Below cli, code also names nothing of the command layer: no run_options (its flag struct) and
# no cmd_*/cli_* function, not even through a function pointer the CLI hands down (comments
# aside). The train layer takes plain parameters or its own structs (train_config).
#
# And above model/ (host/) nothing knows which network runs: no identifier naming a ResNet
# (resnet*, RESNET*, outside strings and comments) and no model/model_internal.h.
#
# Usage: sh tools/check-layers.sh [ROOT]   (default: the repository this script is in)
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

files=$(find host model dataset common -name '*.[ch]' 2>/dev/null | LC_ALL=C sort)
[ -n "$files" ] || { echo "check-layers: no sources under $root" >&2; exit 1; }

# shellcheck disable=SC2086
awk '
function layer_of(p) {
    if (p ~ /^host\/cli\//) return "cli"
    if (p ~ /^host\/train\//) return "train"
    if (p ~ /^host\/tune\//) return "tune"
    if (p ~ /^host\/ops\//) return "ops"
    if (p ~ /^host\/runtime\//) return "runtime"
    if (p ~ /^model\//) return "model"
    if (p ~ /^dataset\//) return "dataset"
    if (p ~ /^common\//) return "common"
    return ""
}
function list(s) { gsub(/^ +| +$/, "", s); return s }
BEGIN {
    allow["cli"] = " cli train tune model ops runtime dataset common "
    allow["train"] = " train model ops runtime dataset common "
    allow["tune"] = " tune ops runtime common "
    allow["model"] = " model ops runtime common "
    allow["ops"] = " ops runtime common "
    allow["runtime"] = " runtime common "
    allow["dataset"] = " dataset common "
    allow["common"] = " common "
    bad = 0
}
FNR == 1 {
    me = layer_of(FILENAME)
    if (me == "") {
        printf "%s: not in a layer folder (host/{cli,train,tune,ops,runtime}/, model/, dataset/, common/)\n", FILENAME
        bad++
    }
}
me != "" && me != "cli" && !/^[ \t]*#[ \t]*include/ {
    code = $0
    sub(/\/\/.*$/, "", code)
    if (match(code, /(^|[^A-Za-z0-9_])(run_options|cmd_[a-z0-9_]+|cli_[a-z0-9_]+)([^A-Za-z0-9_]|$)/)) {
        word = substr(code, RSTART, RLENGTH)
        gsub(/^[^A-Za-z0-9_]+|[^A-Za-z0-9_]+$/, "", word)
        printf "%s:%d: %s: %s may not name the command layer (cli) in code\n", FILENAME, FNR, word, me
        bad++
    }
}
/^[ \t]*#[ \t]*include[ \t]*"/ {
    inc = $0
    sub(/^[^"]*"/, "", inc)
    sub(/".*$/, "", inc)
    if (me == "") next
    to = layer_of(inc)
    if (to == "") {
        if (inc ~ /^(host|model|dataset|common|tests|tools)\//) {
            printf "%s:%d: #include \"%s\": not a layer header (%s may include: %s)\n", FILENAME, FNR, inc, me, list(allow[me])
            bad++
        }
        next   # generated or local headers outside the layer folders
    }
    if (index(allow[me], " " to " ") == 0) {
        printf "%s:%d: #include \"%s\": %s may not include %s (allowed: %s)\n", FILENAME, FNR, inc, me, to, list(allow[me])
        bad++
    }
}
END {
    if (bad) { printf "check-layers: %d forbidden include(s) or name(s); see the table in tools/check-layers.sh\n", bad; exit 1 }
}
' $files

# The network stays in model/: strip strings and comments, then look for ResNet identifiers.
host_files=$(find host -name '*.[ch]' | LC_ALL=C sort)
# shellcheck disable=SC2086
awk '
FNR == 1 { incomment = 0 }
{
    line = $0
    if (line ~ /#[ \t]*include[ \t]*"model\/model_internal\.h"/) {
        printf "%s:%d: model/model_internal.h is for model/ only\n", FILENAME, FNR; bad++
    }
    out = ""
    while (length(line)) {
        if (incomment) {
            e = index(line, "*/")
            if (!e) { line = ""; break }
            line = substr(line, e + 2); incomment = 0; continue
        }
        c = substr(line, 1, 1); two = substr(line, 1, 2)
        if (two == "//") break
        if (two == "/*") { incomment = 1; line = substr(line, 3); continue }
        if (c == "\"" || c == "\047") {   # a string or character literal
            q = c; line = substr(line, 2)
            while (length(line)) {
                d = substr(line, 1, 1)
                if (d == "\\") { line = substr(line, 3); continue }
                line = substr(line, 2)
                if (d == q) break
            }
            out = out " "; continue
        }
        out = out c; line = substr(line, 2)
    }
    if (out ~ /(^|[^A-Za-z0-9_])(resnet|RESNET)[A-Za-z0-9_]*/) {
        printf "%s:%d: names a ResNet above model/: %s\n", FILENAME, FNR, $0; bad++
    }
}
END {
    if (bad) { printf "check-layers: %d line(s) above model/ know the network (model/model.h is the interface)\n", bad; exit 1 }
}
' $host_files
echo "check-layers: includes follow the layers ($(echo "$files" | wc -l) files); no ResNet above model/"
