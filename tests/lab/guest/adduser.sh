#!/bin/sh
# The lab's stand-in for busybox adduser (Alpine) on Debian: `adduser -D [-s SHELL] [-g GECOS] USER`
# becomes useradd with a home folder and a locked password (-D: no password).
shell=/bin/sh
gecos=""
while getopts Ds:g:h:G:u:S opt; do
    case $opt in
        s) shell=$OPTARG ;;
        g) gecos=$OPTARG ;;
        *) ;;
    esac
done
shift $((OPTIND - 1))
exec useradd -m -U -s "$shell" -c "$gecos" "$1"
