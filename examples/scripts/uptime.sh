#!/bin/sh
# An executable script: prints a block of metrics ending with "# EOF" every
# five seconds; a scrape serves the newest complete block.
while true; do
	read -r up idle < /proc/uptime
	echo "# HELP host_uptime_seconds Seconds since boot."
	echo "# TYPE host_uptime_seconds gauge"
	echo "host_uptime_seconds $up"
	echo "# EOF"
	sleep 5
done
