from twisted.application.service import ServiceMaker

vw_portal = ServiceMaker("vw-portal", "vw.portal.tap", "The vw portal.", "vw-portal")
