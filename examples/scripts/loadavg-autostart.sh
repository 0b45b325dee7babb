#!/bin/sh
# "autostart" in the name: runs from the exporter's start, restarted when it
# exits, never stopped for idleness.
while true; do
	read -r l1 l5 l15 rest < /proc/loadavg
	echo "# TYPE host_load gauge"
	echo "host_load{period=\"1m\"} $l1"
	echo "host_load{period=\"5m\"} $l5"
	echo "host_load{period=\"15m\"} $l15"
	echo "# EOF"
	sleep 5
done
