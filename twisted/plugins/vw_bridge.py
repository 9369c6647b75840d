from twisted.application.service import ServiceMaker

vw_bridge = ServiceMaker("vw-bridge", "vw.bridge.tap", "vw's media bridge (SFU).", "vw-bridge")
