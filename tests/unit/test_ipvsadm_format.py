"""ipvsadm's listing and rule formats, byte for byte (ipvsadm 1.31's printf formats), and its command lines."""

from saru.compat.ipvsadm import describe_op, format_listing, format_rules, largenum
from saru.dataplane.base import DestStats, ServiceStats
from saru.model import AddDest, AddService, DelDest, DelService, Dest, Service, ServiceKey, ServiceSettings, Table

WEB = ServiceKey("tcp", "192.168.5.55", 80)
DNS = ServiceKey("udp", "192.168.5.55", 53)
MARK = ServiceKey("fwm", "", 0, 7)
V6 = ServiceKey("tcp", "2001:db8::5", 119, family=6)

TABLE = Table.of([
    Service(DNS, ServiceSettings("rr", ops=True), {("10.0.0.3", 53): Dest("10.0.0.3", 53, "masq", 1)}),
    Service(WEB, ServiceSettings("wrr", 300, "255.255.255.0"), {
        ("192.168.5.43", 80): Dest("192.168.5.43", 80, "gate", 1),
        ("192.168.5.33", 80): Dest("192.168.5.33", 80, "gate", 3, 100, 10),
    }),
    Service(MARK, ServiceSettings("sh", schedflags="sh-fallback,sh-port"),
            {("10.0.0.7", 0): Dest("10.0.0.7", 0, "ipip", 0)}),
    Service(V6, ServiceSettings("rr"), {("2001:db8::6", 119): Dest("2001:db8::6", 119, "masq", 1)}),
])


def test_plain_listing():
    assert format_listing(TABLE, {}) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  192.168.5.55:80 wrr persistent 300 mask 255.255.255.0\n"
        "  -> 192.168.5.33:80              Route   3      0          0         \n"
        "  -> 192.168.5.43:80              Route   1      0          0         \n"
        "UDP  192.168.5.55:53 rr ops\n"
        "  -> 10.0.0.3:53                  Masq    1      0          0         \n"
        "TCP  [2001:db8::5]:119 rr\n"
        "  -> [2001:db8::6]:119            Masq    1      0          0         \n"
        "FWM  7 sh (sh-fallback,sh-port)\n"
        "  -> 10.0.0.7:0                   Tunnel  0      0          0         \n"
    )


def test_thresholds_and_stats():
    stats = {WEB: ServiceStats(connections=12, bytes_in=3456, bytes_out=7890,
                               dests={("192.168.5.33", 80): DestStats(2, 1, 12, 3456, 7890)})}
    only = format_listing(TABLE, stats, "thresholds", only=WEB)
    assert only.splitlines()[2] == "TCP  192.168.5.55:80 wrr persistent 300 mask 255.255.255.0"
    assert only.splitlines()[3] == "  -> 192.168.5.33:80              100        10         2          1         "
    lines = format_listing(TABLE, stats, "stats").splitlines()
    assert lines[1] == "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    # "%-33s" then five "%9llu": 20 characters of name, 13 of padding, then 9-wide numbers
    assert lines[3] == "TCP  192.168.5.55:80" + " " * 13 + "       12        0        0     3456     7890"


def test_largenum_suffixes():
    assert largenum(99_999_999, False) == " 99999999"
    assert largenum(123_456_789, False) == "  123456K"
    assert largenum(123_456_789, True) == " 123456789"


def test_rules_round_trip_shape():
    assert format_rules(TABLE).splitlines()[:4] == [
        "-A -t 192.168.5.55:80 -s wrr -p 300 -M 255.255.255.0",
        "-a -t 192.168.5.55:80 -r 192.168.5.33:80 -g -w 3",  # ipvsadm -S omits thresholds
        "-a -t 192.168.5.55:80 -r 192.168.5.43:80 -g -w 1",
        "-A -u 192.168.5.55:53 -s rr -o",
    ]


def test_rules_carry_the_tunnel_type_like_ipvsadm():
    assert "-a -f 7 -r 10.0.0.7:0 -i -w 0 --tun-type ipip" in format_rules(TABLE).splitlines()


# -- connection entries and sync daemons -----------------------------------------------------------

PROC_CONN = (
    "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
    "TCP 0A630102 CA62 0A630164 0050 0A63020B 0050 TIME_WAIT       119\n"
    "UDP 0A630102 8E82 0A630164 0035 0A63030C 0035 UDP             299\n"
    "TCP 0A630102 0000 0A630164 0050 0A63020B 0050 NONE           3599\n"
    "TCP 2001:0db8:0000:0000:0000:0000:0000:0002 1F90 2001:0db8:0000:0000:0000:0000:0000:0001 "
    "01BB 2001:0db8:0000:0000:0000:0000:0000:000b 01BB ESTABLISHED     899\n"
)


def test_proc_conn_entries_parse():
    from saru.dataplane.ipvs.codec import parse_conn_table

    entries = parse_conn_table(PROC_CONN)
    assert [(e.protocol, e.client, e.virtual, e.dest, e.state, e.expires) for e in entries] == [
        ("TCP", ("10.99.1.2", 51810), ("10.99.1.100", 80), ("10.99.2.11", 80), "TIME_WAIT", 119.0),
        ("UDP", ("10.99.1.2", 36482), ("10.99.1.100", 53), ("10.99.3.12", 53), "UDP", 299.0),
        ("TCP", ("10.99.1.2", 0), ("10.99.1.100", 80), ("10.99.2.11", 80), "NONE", 3599.0),
        ("TCP", ("2001:db8::2", 8080), ("2001:db8::1", 443), ("2001:db8::b", 443), "ESTABLISHED", 899.0),
    ]


def test_connection_listing():
    from saru.compat.ipvsadm import format_connections
    from saru.dataplane.ipvs.codec import parse_conn_table

    assert format_connections(parse_conn_table(PROC_CONN)) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 01:59  TIME_WAIT   10.99.1.2:51810    10.99.1.100:80     10.99.2.11:80\n"
        "UDP 04:59  UDP         10.99.1.2:36482    10.99.1.100:53     10.99.3.12:53\n"
        "TCP 59:59  NONE        10.99.1.2:0        10.99.1.100:80     10.99.2.11:80\n"
        "TCP 14:59  ESTABLISHED [2001:db8::2]:8080 [2001:db8::1]:443  [2001:db8::b]:443\n"
    )
    assert format_connections([], persistent_conn=True) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination        pe name          pe_data\n"
    )


def test_daemon_listing():
    from saru.compat.ipvsadm import format_daemons
    from saru.dataplane.ipvs.sync import SyncDaemon

    daemons = [SyncDaemon("backup", "eth1", 0, 1472, "224.0.0.81", 8848, 1),
               SyncDaemon("master", "eth0", 7, 0, "ff02::81", 0, 0)]
    assert format_daemons(daemons) == (
        "master sync daemon (mcast=eth0, syncid=7, group=ff02::81)\n"
        "backup sync daemon (mcast=eth1, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    )
    assert format_daemons([]) == ""


def test_describe_in_ipvsadm_words():
    v6 = ServiceKey("tcp", "2001:db8::5", 119, family=6)
    assert describe_op(AddService(WEB, ServiceSettings("rr", 300, "255.255.255.0"))) == (
        "-A -t 192.168.5.55:80 -s rr -p 300 -M 255.255.255.0"
    )
    assert describe_op(AddDest(WEB, Dest("10.0.0.1", 80, "gate", 2, 100, 5))) == (
        "-a -t 192.168.5.55:80 -r 10.0.0.1:80 -g -w 2 -x 100 -y 5"
    )
    assert describe_op(DelDest(v6, "2001:db8::6", 119)) == "-d -t [2001:db8::5]:119 -r [2001:db8::6]:119"
    assert describe_op(DelService(ServiceKey("fwm", "", 0, 7, 6))) == "-D -f 7 -6"
