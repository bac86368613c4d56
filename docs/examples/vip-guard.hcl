# The service the VIP belongs to and its HTTP health check, for the local
# Consul agent of every node (e.g. /etc/consul.d/vip-guard.hcl, then
# `consul reload`). vip-elector ties its session to this check
# (VIP_ELECTOR_CHECK_ID=vip-http in /etc/default/vip-elector): while it is
# critical the node does not hold the VIP. interval and timeout are most of
# the failover time for a failing service.
service {
  name = "vip-guard"
  id   = "vip-guard"
  port = 9000
  check {
    id       = "vip-http"
    name     = "VIP HTTP"
    http     = "http://127.0.0.1:9000/healthz"
    interval = "1s"
    timeout  = "1s"
  }
}
