#!/bin/bash
# PID 1 of one node of the test cluster (tests/cluster/bed.py starts it as
#   ip netns exec NS unshare -m -u -p -f --propagation private --mount-proc bash node_init.sh ...).
# It gives the node its own /run, /dev/shm and cluster state directories (libqb's rings and the agents'
# state files must not be shared between the nodes), overlays the repository's OCF agents, sets the
# node's address, starts corosync then pacemakerd, and reaps orphans like an init. SIGTERM stops
# pacemaker and corosync; when this process exits the kernel kills everything left in the node.
#
# usage: node_init.sh STATE_DIR NODE_NAME ADDRESS/PREFIX GATEWAY [OCF_DIR]
set -u
D="$1"; NODE="$2"; ADDR="$3"; GW="$4"; OCF="${5:-}"
exec >>"$D/node-init.log" 2>&1
log() { printf '%s %s\n' "$(date +%T.%3N)" "$*"; }
log "node-init for $NODE (pid $$ in the node)"

mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=64m saru-run /run
mount -t tmpfs -o mode=1777,size=128m saru-shm /dev/shm
mkdir -p /run/lock /run/crm /run/pacemaker /run/resource-agents /run/corosync
chmod 1777 /run/lock
chown hacluster:haclient /run/crm /run/pacemaker
for m in etc-corosync:/etc/corosync var-lib-corosync:/var/lib/corosync \
         var-lib-pacemaker:/var/lib/pacemaker var-log-pacemaker:/var/log/pacemaker \
         var-log-corosync:/var/log/corosync etc-hosts:/etc/hosts; do
    mount --bind "$D/${m%%:*}" "${m#*:}" || { log "bind mount $m failed"; exit 1; }
done
if [ -n "$OCF" ] && [ -d "$OCF" ]; then
    # the project's providers (ocf/saru/...) on top of the system's, inside this node only
    mount -t overlay saru-ocf -o "lowerdir=$OCF:/usr/lib/ocf/resource.d" /usr/lib/ocf/resource.d \
        || { log "OCF overlay failed"; exit 1; }
fi
hostname "$NODE"

# a booting box has only its own address (a crashed node left its VIP behind)
ip link set lo up
ip addr flush dev eth0
ip addr add "$ADDR" dev eth0
ip link set eth0 up
ip route replace default via "$GW"

export PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none PCMK_debug=no
export HA_LOGFACILITY=none HA_LOGFILE=/var/log/pacemaker/pacemaker.log HA_debug=0
ulimit -c 0

COROSYNC=""; PACEMAKERD=""
stop_node() {
    log "SIGTERM: stopping pacemaker"
    if [ -n "$PACEMAKERD" ] && kill -0 "$PACEMAKERD" 2>/dev/null; then
        kill -TERM "$PACEMAKERD"
        for _ in $(seq 1 300); do kill -0 "$PACEMAKERD" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopping corosync"
    corosync-cfgtool -H --force >/dev/null 2>&1 || true
    [ -n "$COROSYNC" ] && kill -TERM "$COROSYNC" 2>/dev/null
    for _ in $(seq 1 100); do pidof corosync >/dev/null 2>&1 || break; sleep 0.1; done
    log "node-init exiting"
    exit 0
}
trap stop_node TERM INT

corosync -f &
COROSYNC=$!
for _ in $(seq 1 200); do
    corosync-cmapctl -g runtime.votequorum.this_node_id >/dev/null 2>&1 && break
    sleep 0.05
done
log "corosync up (pid $COROSYNC)"
pacemakerd &
PACEMAKERD=$!
log "pacemakerd started (pid $PACEMAKERD)"
touch /run/node-init.ready

while :; do   # PID 1: reap every orphan
    sleep 1 &
    wait $! 2>/dev/null
done
