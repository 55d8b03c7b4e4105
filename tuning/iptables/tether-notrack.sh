#!/usr/bin/env bash
# tether: keep SIP and RTP out of connection tracking with iptables and
# ip6tables (raw table, -j CT --notrack). Same rules as
# tuning/nftables/tether-notrack.nft, for hosts whose firewall is managed with
# iptables. Read tuning/README.md "NOTRACK" before using it: untracked packets
# need an explicit ACCEPT in a filter chain with policy DROP, and cannot be NATed.
#
# Usage: tether-notrack.sh [--remove]
#   SIP_PORT=5060 RTP_PORTS=20000:39999 tether-notrack.sh   (the defaults)
#
# Adding is idempotent (each rule is checked with -C before -A); --remove
# deletes every copy of the rules. Rules do not survive a reboot: save them
# with iptables-save/ip6tables-save (netfilter-persistent) or run this at boot.
set -euo pipefail

SIP_PORT=${SIP_PORT:-5060}
RTP_PORTS=${RTP_PORTS:-20000:39999}
COMMENT=tether-notrack

usage() {
	sed -n '2,13s/^# \{0,1\}//p' "$0"
}

die() {
	echo "tether-notrack: $*" >&2
	exit 1
}

mode=add
while (($#)); do
	case $1 in
	--remove) mode=remove ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
	shift
done

[[ $(id -u) -eq 0 ]] || die "must run as root"

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
valid_port "$SIP_PORT" || die "SIP_PORT must be a port number, got '$SIP_PORT'"
RTP_PORTS=${RTP_PORTS/-/:}
rtp_first=${RTP_PORTS%%:*} rtp_last=${RTP_PORTS#*:}
if [[ $RTP_PORTS != *:* ]] || ! valid_port "$rtp_first" || ! valid_port "$rtp_last" ||
	((10#$rtp_first > 10#$rtp_last)); then
	die "RTP_PORTS must be FIRST:LAST, got '$RTP_PORTS'"
fi

# rules TOOL: add or remove the four rules (SIP and RTP, in and out) with TOOL.
rules() {
	local tool=$1 chain dir port n
	local -a spec
	for chain in PREROUTING OUTPUT; do
		# Arriving packets are matched on the local (destination) port,
		# packets tether sends on the local (source) port.
		if [[ $chain == PREROUTING ]]; then dir=--dport; else dir=--sport; fi
		for port in "$SIP_PORT" "$RTP_PORTS"; do
			spec=(-p udp "$dir" "$port" -m comment --comment "$COMMENT" -j CT --notrack)
			if [[ $mode == add ]]; then
				if "$tool" -w -t raw -C "$chain" "${spec[@]}" 2>/dev/null; then
					echo "$tool: present: -t raw -A $chain ${spec[*]}"
				else
					"$tool" -w -t raw -A "$chain" "${spec[@]}"
					echo "$tool: added:   -t raw -A $chain ${spec[*]}"
				fi
			else
				n=0
				while "$tool" -w -t raw -C "$chain" "${spec[@]}" 2>/dev/null; do
					"$tool" -w -t raw -D "$chain" "${spec[@]}"
					n=$((n + 1))
				done
				echo "$tool: removed $n: -t raw -A $chain ${spec[*]}"
			fi
		done
	done
}

command -v iptables >/dev/null || die "iptables not found"
iptables -w -t raw -S >/dev/null || die "iptables: no raw table"
rules iptables

if ! command -v ip6tables >/dev/null; then
	echo "tether-notrack: ip6tables not found; IPv6 rules skipped" >&2
elif ! ip6tables -w -t raw -S >/dev/null 2>&1; then
	echo "tether-notrack: ip6tables has no raw table (IPv6 off?); IPv6 rules skipped" >&2
else
	rules ip6tables
fi
