#!/usr/bin/env bash
# Spread a NIC's interrupts over CPUs and set RPS/RFS, for tether hosts.
#
# Usage: irq-affinity.sh [--dry-run] [--no-rps] IFACE [CPU_LIST]
#   IFACE      network interface, e.g. eth0 (for a bond or VLAN: its NICs)
#   CPU_LIST   CPUs to use, e.g. 0-7 or 0,2,4-6 (default: all online CPUs)
#   --dry-run  print what would be written; change nothing
#   --no-rps   set IRQ affinity only; leave RPS/RFS as they are
#
# IRQs: the /proc/interrupts lines naming IFACE (eth0-TxRx-3, i40e-eth0-TxRx-3,
# ...), for virtio_net the virtioN queue lines; if none, the MSI vectors of
# the NIC's PCI function (mlx5 names its IRQs by PCI address). They are spread
# round-robin over CPU_LIST through /proc/irq/N/smp_affinity_list.
# RPS: rps_cpus of every rx queue = CPU_LIST. RFS: rps_sock_flow_entries at
# least 32768, rps_flow_cnt per queue = rps_sock_flow_entries / rx queues.
#
# Nothing persists: run it again after boot, link reset or driver reload.
# irqbalance moves IRQs again unless it is stopped or told to skip them.
set -euo pipefail
shopt -s extglob nullglob

die() {
	echo "irq-affinity: $*" >&2
	exit 1
}
warn() { echo "irq-affinity: warning: $*" >&2; }
usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

DRY_RUN=0
RPS=1
args=()
while (($#)); do
	case $1 in
	--dry-run) DRY_RUN=1 ;;
	--no-rps) RPS=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	-*)
		usage >&2
		die "unknown option: $1"
		;;
	*) args+=("$1") ;;
	esac
	shift
done
((${#args[@]} >= 1 && ${#args[@]} <= 2)) || {
	usage >&2
	exit 2
}
IFACE=${args[0]}
CPU_LIST=${args[1]:-}

[[ $(id -u) -eq 0 ]] || die "must run as root (even with --dry-run)"
[[ $IFACE != */* && $IFACE != . && $IFACE != .. && -e /sys/class/net/$IFACE ]] ||
	die "no such network interface: $IFACE"

# expand_cpus LIST: set CPU_SET to the CPUs of a list such as 0-3,8,10-11,
# sorted and unique.
expand_cpus() {
	local part lo hi c
	local -a seen=()
	[[ $1 =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || die "bad CPU list: '$1'"
	for part in ${1//,/ }; do
		lo=$((10#${part%-*})) hi=$((10#${part#*-}))
		((lo <= hi && hi < 8192)) || die "bad CPU range: '$part'"
		for ((c = lo; c <= hi; c++)); do seen[c]=1; done
	done
	CPU_SET=("${!seen[@]}")
}

# cpumask CPU...: the kernel's hex bitmap format, 32-bit words separated by commas.
cpumask() {
	local -a words=()
	local c w top=0 out
	for c; do
		w=$((c / 32))
		words[w]=$((${words[w]:-0} | (1 << (c % 32))))
		if ((w > top)); then top=$w; fi
	done
	out=$(printf '%x' "${words[top]}")
	for ((w = top - 1; w >= 0; w--)); do out+=$(printf ',%08x' "${words[w]:-0}"); done
	echo "$out"
}

# same_mask A B: true when two hex bitmaps are equal (ignores commas, leading zeros).
same_mask() {
	local a=${1//,/} b=${2//,/}
	a=${a##+(0)} b=${b##+(0)}
	[[ ${a:-0} == "${b:-0}" ]]
}

FAILED=0
# apply FILE VALUE [LABEL]: write VALUE to FILE (or say it would), print the change.
apply() {
	local file=$1 want=$2 label=${3:-$1} now after
	now=$(<"$file") || now='?'
	if [[ $now == "$want" ]] || { [[ $file == */rps_cpus ]] && same_mask "$now" "$want"; }; then
		echo "unchanged     $label = $now"
	elif ((DRY_RUN)); then
		echo "would write   $label: $now -> $want"
	elif { printf '%s\n' "$want" >"$file"; } 2>/dev/null; then
		after=$(<"$file") || after='?'
		echo "changed       $label: $now -> $after"
	else
		warn "could not write $want to $file (managed IRQ or read-only?)"
		FAILED=1
	fi
}

online=$(</sys/devices/system/cpu/online)
expand_cpus "$online"
ONLINE=("${CPU_SET[@]}")
expand_cpus "${CPU_LIST:-$online}"
CPUS=("${CPU_SET[@]}")
for c in "${CPUS[@]}"; do
	[[ " ${ONLINE[*]} " == *" $c "* ]] || die "CPU $c is not online (online: $online)"
done
echo "interface $IFACE, CPUs ${CPU_LIST:-$online}$( ((DRY_RUN)) && echo ', dry run: nothing is written')"

# --- IRQ affinity -----------------------------------------------------------

# has_token TEXT TOKEN: TOKEN appears in TEXT delimited by - _ @ : . , or space.
has_token() {
	case "-$1-" in
	*[-_@:.,\ ]"$2"[-_@:.,\ ]*) return 0 ;;
	esac
	return 1
}

dev=$(readlink -f "/sys/class/net/$IFACE/device" 2>/dev/null) || dev=
vdev=
if [[ ${dev##*/} =~ ^virtio[0-9]+$ ]]; then vdev=${dev##*/}; fi

IRQS=() NAMES=()
while read -r irq rest; do
	if has_token "$rest" "$IFACE" ||
		{ [[ -n $vdev ]] && has_token "$rest" "$vdev" && [[ $rest != *-config ]]; }; then
		IRQS+=("$irq") NAMES+=("${rest##* }")
	fi
done < <(awk '$1 ~ /^[0-9]+:$/ { n = $1; sub(/:$/, "", n); $1 = ""; print n, $0 }' /proc/interrupts)

if ((${#IRQS[@]} == 0)) && [[ -n $dev ]]; then
	for d in "$dev" "$dev/.."; do
		if [[ -d $d/msi_irqs ]]; then
			mapfile -t IRQS < <(find "$d/msi_irqs" -mindepth 1 -maxdepth 1 -name '[0-9]*' -printf '%f\n' | sort -n)
			for irq in "${IRQS[@]}"; do
				NAMES+=("$(awk -v n="$irq:" '$1 == n { print $NF }' /proc/interrupts)")
			done
			warn "no IRQ named after $IFACE; using the ${#IRQS[@]} MSI vectors of $(readlink -f "$d"), control vectors included"
			break
		fi
	done
fi

if ((${#IRQS[@]} == 0)); then
	warn "no IRQs found for $IFACE (virtual interface? run this for the physical NICs)"
else
	for i in "${!IRQS[@]}"; do
		irq=${IRQS[i]}
		file=/proc/irq/$irq/smp_affinity_list
		if [[ ! -e $file ]]; then
			warn "IRQ $irq has no $file"
			FAILED=1
			continue
		fi
		apply "$file" "${CPUS[i % ${#CPUS[@]}]}" "irq $irq (${NAMES[i]:-?}) smp_affinity_list"
	done
	ban=$(printf -- ' --banirq=%s' "${IRQS[@]}")
	if pgrep -x irqbalance >/dev/null 2>&1; then
		warn "irqbalance is running and will move these IRQs again."
	else
		warn "if irqbalance is started later it will move these IRQs again."
	fi
	cat >&2 <<EOF
  Stop it:  systemctl disable --now irqbalance
  or ban these IRQs: IRQBALANCE_ARGS="${ban# }"
            in /etc/default/irqbalance (Debian/Ubuntu) or /etc/sysconfig/irqbalance (RHEL), then restart it.
EOF
fi

# --- RPS / RFS -----------------------------------------------------------------

if ((RPS)); then
	rxqs=("/sys/class/net/$IFACE"/queues/rx-*)
	if ((${#rxqs[@]} == 0)) || [[ ! -e ${rxqs[0]}/rps_cpus ]]; then
		warn "no $IFACE rx queues with rps_cpus (kernel without CONFIG_RPS?); RPS not set"
	else
		mask=$(cpumask "${CPUS[@]}")
		for q in "${rxqs[@]}"; do
			apply "$q/rps_cpus" "$mask"
		done
		# Global socket flow table: the kernel rounds it up to a power of two.
		entries=$(</proc/sys/net/core/rps_sock_flow_entries)
		if ((entries < 32768)); then entries=32768; fi
		apply /proc/sys/net/core/rps_sock_flow_entries "$entries"
		# Per queue: an equal share, rounded down to a power of two (the kernel
		# would round it up).
		cnt=1
		while ((cnt * 2 <= entries / ${#rxqs[@]})); do cnt=$((cnt * 2)); done
		for q in "${rxqs[@]}"; do
			apply "$q/rps_flow_cnt" "$cnt"
		done
	fi
fi

if ((FAILED)); then
	die "some values could not be set (see warnings above)"
fi
