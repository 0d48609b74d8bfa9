# Included by templates (jinja include): prints the device of each console= of the kernel command line
# ($BEE_CMDLINE) but the last, which is /dev/console and gets the caller's output anyway.
other_consoles() {
	awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^console=/) { sub(/^console=/, "", $i); sub(/,.*/, "", $i); c[n++] = $i } }
		END { for (i = 0; i < n - 1; i++) print c[i] }' "$BEE_CMDLINE" 2>/dev/null
}
