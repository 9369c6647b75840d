from twisted.application.service import ServiceMaker

vw_xmpp = ServiceMaker("vw-xmpp", "vw.xmpp.tap", "vw's XMPP server (shard signaling).", "vw-xmpp")
