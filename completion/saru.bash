# bash completion for saru and saru-ldirectord
# Generated from saru's argument parser by `python -m saru.docgen` (make completion): do not edit.

_saru_is_command() {
    case "${1:+$1 }$2" in
        run|check-config|plan|status|reload|stop|drain|disable|enable|weight|ipvsadm|demo|failover-test|cluster|'cluster crm'|'cluster pcs'|'cluster log'|realserver|doctor|vipcheck) return 0 ;;
        *) return 1 ;;
    esac
}

_saru_subcommands() {
    case "$1" in
        "") echo 'run check-config plan status reload stop drain disable enable weight ipvsadm demo failover-test cluster realserver doctor vipcheck' ;;
        cluster) echo 'crm pcs log' ;;
        *) : ;;
    esac
}

_saru_options() {
    case "$1" in
        "") echo '-h --help --version' ;;
        run) echo '-h --help -c --config --settings --dataplane --control --pidfile --rise --start-timeout --drift-interval -q --quiet -d --debug --no-drop --handover --event-loop' ;;
        check-config) echo '-h --help -c --config --settings --dataplane --json' ;;
        plan) echo '-h --help -c --config --settings --control --assume --proxy-ports --json' ;;
        status) echo '-h --help -c --config --settings --control --json' ;;
        reload) echo '-h --help -c --config --settings --control' ;;
        stop) echo '-h --help -c --config --settings --control --timeout' ;;
        drain) echo '-h --help -c --config --settings --control --json --timeout --quiet' ;;
        disable) echo '-h --help -c --config --settings --control --json' ;;
        enable) echo '-h --help -c --config --settings --control --json' ;;
        weight) echo '-h --help -c --config --settings --control --json' ;;
        ipvsadm) echo '-h --help --config --control --dataplane -A --add-service -E --edit-service -D --delete-service -C --clear -R --restore -S --save -a --add-server -e --edit-server -d --delete-server -L --list -Z --zero -t --tcp-service -u --udp-service -f --fwmark-service -6 --ipv6 -s --scheduler -p --persistent -M --netmask -b --sched-flags -o --ops -r --real-server -g --gatewaying -i --ipip -m --masquerading --tun-type -w --weight -x --u-threshold -y --l-threshold -n --numeric -c --connection --exact --stats --rate --thresholds --persistent-conn --start-daemon --stop-daemon --daemon --mcast-interface --syncid --mcast-group --mcast-port --mcast-ttl --sync-maxlen' ;;
        demo) echo '-h --help --port --dir --duration --api-port' ;;
        failover-test) echo '-h --help -c --config --settings --control --probe --http --back --hold --timeout --settle --json' ;;
        cluster) echo '-h --help' ;;
        'cluster crm') echo '-h --help --settings -s --config -c --binary --output -o' ;;
        'cluster pcs') echo '-h --help --settings -s --config -c --binary --output -o' ;;
        'cluster log') echo '-h --help --follow -f --lines -n --json --settings -s' ;;
        realserver) echo '-h --help --vip --interface --netconf --root --no-runtime --undo --json' ;;
        doctor) echo '-h --help -c --config --settings --no-probe --timeout --json' ;;
        vipcheck) echo '-h --help -i --interface -t --timeout --all --json' ;;
        *) : ;;
    esac
}

_saru_takes_value() {
    case "${1:+$1 }$2" in
        'run -c'|'run --config'|'run --settings'|'run --dataplane'|'run --control'|'run --pidfile'|'run --rise'|'run --start-timeout'|'run --drift-interval'|'run --event-loop'|'check-config -c'|'check-config --config'|'check-config --settings'|'check-config --dataplane'|'plan -c'|'plan --config'|'plan --settings'|'plan --control'|'plan --assume'|'status -c'|'status --config'|'status --settings'|'status --control'|'reload -c'|'reload --config'|'reload --settings'|'reload --control'|'stop -c'|'stop --config'|'stop --settings'|'stop --control'|'stop --timeout'|'drain -c'|'drain --config'|'drain --settings'|'drain --control'|'drain --timeout'|'drain --quiet'|'disable -c'|'disable --config'|'disable --settings'|'disable --control'|'enable -c'|'enable --config'|'enable --settings'|'enable --control'|'weight -c'|'weight --config'|'weight --settings'|'weight --control'|'ipvsadm --config'|'ipvsadm --control'|'ipvsadm --dataplane'|'ipvsadm -t'|'ipvsadm --tcp-service'|'ipvsadm -u'|'ipvsadm --udp-service'|'ipvsadm -f'|'ipvsadm --fwmark-service'|'ipvsadm -s'|'ipvsadm --scheduler'|'ipvsadm -p'|'ipvsadm --persistent'|'ipvsadm -M'|'ipvsadm --netmask'|'ipvsadm -b'|'ipvsadm --sched-flags'|'ipvsadm -r'|'ipvsadm --real-server'|'ipvsadm --tun-type'|'ipvsadm -w'|'ipvsadm --weight'|'ipvsadm -x'|'ipvsadm --u-threshold'|'ipvsadm -y'|'ipvsadm --l-threshold'|'ipvsadm --start-daemon'|'ipvsadm --stop-daemon'|'ipvsadm --mcast-interface'|'ipvsadm --syncid'|'ipvsadm --mcast-group'|'ipvsadm --mcast-port'|'ipvsadm --mcast-ttl'|'ipvsadm --sync-maxlen'|'demo --port'|'demo --dir'|'demo --duration'|'demo --api-port'|'failover-test -c'|'failover-test --config'|'failover-test --settings'|'failover-test --control'|'failover-test --probe'|'failover-test --http'|'failover-test --hold'|'failover-test --timeout'|'failover-test --settle'|'cluster crm --settings'|'cluster crm -s'|'cluster crm --config'|'cluster crm -c'|'cluster crm --binary'|'cluster crm --output'|'cluster crm -o'|'cluster pcs --settings'|'cluster pcs -s'|'cluster pcs --config'|'cluster pcs -c'|'cluster pcs --binary'|'cluster pcs --output'|'cluster pcs -o'|'cluster log --lines'|'cluster log -n'|'cluster log --settings'|'cluster log -s'|'realserver --vip'|'realserver --interface'|'realserver --netconf'|'realserver --root'|'doctor -c'|'doctor --config'|'doctor --settings'|'doctor --timeout'|'vipcheck -i'|'vipcheck --interface'|'vipcheck -t'|'vipcheck --timeout') return 0 ;;
        *) return 1 ;;
    esac
}

_saru_value() {
    case "${1:+$1 }$2" in
        'run -c'|'run --config') _saru_files ;;
        'run --settings') _saru_files ;;
        'run --dataplane') _saru_words 'auto ipvs nft proxy' ;;
        'run --control') _saru_files ;;
        'run --pidfile') _saru_files ;;
        'run --event-loop') _saru_words 'asyncio uvloop' ;;
        'check-config -c'|'check-config --config') _saru_files ;;
        'check-config --settings') _saru_files ;;
        'check-config --dataplane') _saru_words 'auto ipvs nft proxy' ;;
        'plan -c'|'plan --config') _saru_files ;;
        'plan --settings') _saru_files ;;
        'plan --control') _saru_files ;;
        'plan --assume') _saru_words 'up down' ;;
        'status -c'|'status --config') _saru_files ;;
        'status --settings') _saru_files ;;
        'status --control') _saru_files ;;
        'reload -c'|'reload --config') _saru_files ;;
        'reload --settings') _saru_files ;;
        'reload --control') _saru_files ;;
        'stop -c'|'stop --config') _saru_files ;;
        'stop --settings') _saru_files ;;
        'stop --control') _saru_files ;;
        'drain -c'|'drain --config') _saru_files ;;
        'drain --settings') _saru_files ;;
        'drain --control') _saru_files ;;
        'disable -c'|'disable --config') _saru_files ;;
        'disable --settings') _saru_files ;;
        'disable --control') _saru_files ;;
        'enable -c'|'enable --config') _saru_files ;;
        'enable --settings') _saru_files ;;
        'enable --control') _saru_files ;;
        'weight -c'|'weight --config') _saru_files ;;
        'weight --settings') _saru_files ;;
        'weight --control') _saru_files ;;
        'ipvsadm --config') _saru_files ;;
        'ipvsadm --control') _saru_files ;;
        'ipvsadm --dataplane') _saru_words 'ipvs nft' ;;
        'ipvsadm --tun-type') _saru_words ipip ;;
        'ipvsadm --start-daemon') _saru_words 'master backup' ;;
        'ipvsadm --stop-daemon') _saru_words 'master backup' ;;
        'demo --dir') _saru_dirs ;;
        'failover-test -c'|'failover-test --config') _saru_files ;;
        'failover-test --settings') _saru_files ;;
        'failover-test --control') _saru_files ;;
        'failover-test --http') _saru_files ;;
        'cluster crm --settings'|'cluster crm -s') _saru_files ;;
        'cluster crm --config'|'cluster crm -c') _saru_files ;;
        'cluster crm --binary') _saru_files ;;
        'cluster crm --output'|'cluster crm -o') _saru_files ;;
        'cluster pcs --settings'|'cluster pcs -s') _saru_files ;;
        'cluster pcs --config'|'cluster pcs -c') _saru_files ;;
        'cluster pcs --binary') _saru_files ;;
        'cluster pcs --output'|'cluster pcs -o') _saru_files ;;
        'cluster log --settings'|'cluster log -s') _saru_files ;;
        'realserver --netconf') _saru_words 'ifupdown networkd networkmanager network-scripts none' ;;
        'realserver --root') _saru_dirs ;;
        'doctor -c'|'doctor --config') _saru_files ;;
        'doctor --settings') _saru_files ;;
        *) : ;;
    esac
}

_saru_positional() {
    case "$1:$2" in
        check-config:0) _saru_files ;;
        drain:0) : ;;
        drain:1) : ;;
        disable:0) : ;;
        disable:1) : ;;
        enable:0) : ;;
        enable:1) : ;;
        weight:0) : ;;
        weight:1) : ;;
        weight:2) : ;;
        'cluster log:'*) _saru_files ;;
        realserver:0) _saru_words 'apply check' ;;
        vipcheck:0) : ;;
        *) return 1 ;;
    esac
}

_saru_ldirectord_verbs='start stop restart try-restart reload force-reload status'
_saru_ldirectord_options='-d --debug -h -? --help -v --version'


_saru_words() {  # complete from a word list
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}

_saru_files() {
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

_saru_dirs() {
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
}

_saru() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path="" word skip=0 npos=0 i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == "=" ]]; then skip=1; continue; fi
        if ((skip)); then skip=0; continue; fi
        case $word in
            --*=*) ;;
            -?*) _saru_takes_value "$path" "$word" && skip=1 ;;
            *) if _saru_is_command "$path" "$word"; then path=${path:+$path }$word; npos=0
               else npos=$((npos + 1)); fi ;;
        esac
    done
    if [[ $prev == "=" ]] && ((COMP_CWORD >= 2)); then
        _saru_value "$path" "${COMP_WORDS[COMP_CWORD-2]}"; return 0
    fi
    if ((skip)); then _saru_value "$path" "$prev"; return 0; fi
    if [[ $cur == -* ]]; then _saru_words "$(_saru_options "$path")"; return 0; fi
    local subcommands
    subcommands=$(_saru_subcommands "$path")
    if [[ -n $subcommands ]]; then _saru_words "$subcommands"; return 0; fi
    _saru_positional "$path" "$npos" || _saru_words "$(_saru_options "$path")"
    return 0
}

_saru_ldirectord() {
    local cur=${COMP_WORDS[COMP_CWORD]} word nargs=0 verb="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
            -?*) ;;
            *) nargs=$((nargs + 1)); [[ " $_saru_ldirectord_verbs " == *" $word "* ]] && verb=$word ;;
        esac
    done
    if [[ $cur == -* ]]; then _saru_words "$_saru_ldirectord_options"; return 0; fi
    [[ -n $verb ]] && return 0
    if ((nargs == 0)); then
        _saru_files
        local files=("${COMPREPLY[@]}")
        _saru_words "$_saru_ldirectord_verbs"
        COMPREPLY+=("${files[@]}")
    else
        _saru_words "$_saru_ldirectord_verbs"
    fi
    return 0
}

complete -F _saru saru
complete -F _saru_ldirectord saru-ldirectord
