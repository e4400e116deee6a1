-- lineproto.lua: Wireshark dissector for the lab's two line protocols.
--
--   reqresp (TCP 2222): the client sends a line, the server answers `Echo: <line>`.
--   upcall  (TCP 4141): the client sends a line, the server answers at once
--                       `Upcall event: Processing <line>` and later, on its own initiative,
--                       `Upcall event: Progress <line> 50%` and `Upcall event: Done <line>`.
--
-- Each message is one UTF-8 line ending in "\n"; the dissector reassembles lines split over
-- TCP segments, shows every line of a segment and names it: Request, Echo reply, Error,
-- Upcall event (reply) for `Processing`, Upcall event (server-initiated) for Progress and Done.
-- Filter fields: reqresp.type, reqresp.text, upcall.type, upcall.event, upcall.server_initiated,
-- upcall.text (e.g. `upcall.server_initiated == 1`).
--
-- Load it with `wireshark -X lua_script:captures/lineproto.lua` (what `make wireshark-<proto>`
-- does) or copy it into the personal Lua plugins folder (Help > About Wireshark > Folders).

-- Loaded twice (plugins folder and -X lua_script)? Registering a protocol twice is an error.
local already_loaded, existing = pcall(Dissector.get, "upcall")
if already_loaded and existing ~= nil then
    return
end

local REQRESP_PORT = 2222
local UPCALL_PORT = 4141
-- A line longer than the servers accept (64 KiB) plus slack: past it, stop reassembling.
local MAX_LINE_BYTES = 64 * 1024 + 2

local UPCALL_PREFIX = "Upcall event: "

local function make_proto(name, title)
    local proto = Proto(name, title)
    local fields = {
        type = ProtoField.string(name .. ".type", "Message type"),
        text = ProtoField.string(name .. ".text", "Text", base.UNICODE),
        len = ProtoField.uint32(name .. ".length", "Line length (bytes, without the newline)"),
    }
    if name == "upcall" then
        fields.event = ProtoField.string("upcall.event", "Event")
        fields.server_initiated = ProtoField.bool("upcall.server_initiated",
            "Server-initiated (a callback, not the reply to a request)")
    end
    local list = {}
    for _, f in pairs(fields) do
        list[#list + 1] = f
    end
    proto.fields = list
    return proto, fields
end

-- What a line is, from its direction and its text: its type, the upcall event, whether the server
-- sent it on its own initiative, and the text for the Info column (the known prefix left out).
local function classify(flavour, from_server, text)
    if not from_server then
        return "Request", nil, false, text
    end
    if flavour == "upcall" and text:sub(1, #UPCALL_PREFIX) == UPCALL_PREFIX then
        local rest = text:sub(#UPCALL_PREFIX + 1)
        local event = rest:match("^(%a+)") or "?"
        if event == "Error" then
            return "Error", event, false, (rest:gsub("^Error:?%s*", ""))
        end
        if event == "Processing" then
            return "Upcall event (reply)", event, false, rest
        end
        return "Upcall event (server-initiated)", event, true, rest
    end
    if text:sub(1, 6) == "Echo: " then
        return "Echo reply", nil, false, text:sub(7)
    end
    if text:sub(1, 6) == "Error:" then
        return "Error", nil, false, (text:gsub("^Error:%s*", ""))
    end
    return "Reply", nil, false, text
end

local function make_dissector(proto, fields, flavour, default_port)
    local label = proto.name:upper()
    return function(tvb, pinfo, tree)
        local total = tvb:len()
        if total == 0 then
            return 0
        end
        -- The port this table entry matched is the server's (works for Decode As too).
        local server_port = pinfo.match_uint
        if server_port == nil or server_port == 0 then
            server_port = default_port
        end
        local from_server = pinfo.src_port == server_port
        local raw = tvb:raw(0, total)
        local offset = 0
        local shown = 0
        while offset < total do
            local nl = raw:find("\n", offset + 1, true)
            if nl == nil then
                if total - offset < MAX_LINE_BYTES then
                    -- The rest of this line is in a later segment: ask TCP for more.
                    pinfo.desegment_offset = offset
                    pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
                    break
                end
                nl = total -- an overlong line without its end: show what is there
            end
            local line_len = nl - offset - 1 -- bytes before the "\n"
            local body_len = line_len
            if body_len > 0 and raw:byte(offset + body_len) == 13 then
                body_len = body_len - 1 -- tolerate "\r\n"
            end
            local range = tvb(offset, nl - offset)
            local text = ""
            if body_len > 0 then
                text = tvb(offset, body_len):string(ENC_UTF_8)
            end
            local kind, event, initiated, shown_text = classify(flavour, from_server, text)
            local subtree = tree:add(proto, range, proto.description .. ": " .. kind)
            subtree:add(fields.type, range, kind)
            if body_len > 0 then
                subtree:add_packet_field(fields.text, tvb(offset, body_len), ENC_UTF_8)
            else
                subtree:add(fields.text, range, "")
            end
            subtree:add(fields.len, range, body_len)
            if fields.event and event then
                subtree:add(fields.event, range, event)
                subtree:add(fields.server_initiated, range, initiated)
            end
            local summary = kind .. ": " .. shown_text
            if shown == 0 then
                pinfo.cols.protocol = label
                pinfo.cols.info = summary
            else
                pinfo.cols.info:append(" | " .. summary)
            end
            shown = shown + 1
            offset = nl
        end
        return total
    end
end

local reqresp, reqresp_fields = make_proto("reqresp", "Lab request/response line protocol")
reqresp.dissector = make_dissector(reqresp, reqresp_fields, "reqresp", REQRESP_PORT)

local upcall, upcall_fields = make_proto("upcall", "Lab upcall line protocol")
upcall.dissector = make_dissector(upcall, upcall_fields, "upcall", UPCALL_PORT)

-- Own the two ports outright (no heuristics needed); Decode As can add more ports.
local tcp_port = DissectorTable.get("tcp.port")
tcp_port:add(REQRESP_PORT, reqresp)
tcp_port:add(UPCALL_PORT, upcall)
