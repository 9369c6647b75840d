from twisted.application.service import ServiceMaker

vw_turn = ServiceMaker("vw-turn", "vw.turn.tap", "The vw TURN server.", "vw-turn")
