from twisted.application.service import ServiceMaker

vw_balancer = ServiceMaker("vw-balancer", "vw.balancer.tap", "The vw balancer.", "vw-balancer")
