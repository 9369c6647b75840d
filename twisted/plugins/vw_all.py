from twisted.application.service import ServiceMaker

vw_all = ServiceMaker("vw", "vw.allinone.tap", "Every vw service in one process.", "vw")
