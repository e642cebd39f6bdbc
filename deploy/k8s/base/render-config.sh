#!/bin/sh
# Render the palaver.toml template ($1) to $2, replacing every dollar-brace NAME placeholder with the environment
# variable NAME (awk's ENVIRON: no shell expansion of the values, any character but a newline
# is copied as is). An unset variable is an error, so a missing Secret key stops the pod
# with a message instead of starting it on a half-configured file.
set -eu
awk '
{
  out = ""
  line = $0
  while (match(line, /\$\{[A-Z_][A-Z0-9_]*\}/)) {
    name = substr(line, RSTART + 2, RLENGTH - 3)
    if (!(name in ENVIRON)) { print "render-config: " name " is not set" > "/dev/stderr"; exit 1 }
    out = out substr(line, 1, RSTART - 1) ENVIRON[name]
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}' "$1" > "$2.tmp"
mv "$2.tmp" "$2"
