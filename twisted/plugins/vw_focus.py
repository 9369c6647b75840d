from twisted.application.service import ServiceMaker

vw_focus = ServiceMaker("vw-focus", "vw.focus.tap", "The vw conference focus.", "vw-focus")
