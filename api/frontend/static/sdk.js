/*! Vary front-end kit (served by Vary at /v1/sdk.js; ES module at /v1/sdk.mjs). No dependencies.
 *
 * Classic script:  <script src="https://vary.example.com/v1/sdk.js" data-key="vd_..."></script>
 *                  → window.vary (ready to use) and window.Vary.createVary
 * ES module:       import { createVary } from "https://vary.example.com/v1/sdk.mjs";
 *                  const vary = createVary({ key: "vd_..." });
 *
 *   const page = await vary.personalize(["heroHome"], { country: "CA" });
 *   page.variants.heroHome.fields.title          // the chosen variant's fields
 *   <section data-vary-entry="heroHome">          // exposure recorded when it is actually seen
 *   vary.track("conversion", { goal: "signup" }); // sent with navigator.sendBeacon
 *   vary.consent({ personalization: true, analytics: false });
 *
 * What it keeps: a first-party visitor id (localStorage "vary_vid", cookie fallback) and a session id
 * per tab (sessionStorage). What it sends: POST /v1/personalize (fetch, Authorization header);
 * events and exposures as beacons (text/plain JSON, key in the query string: beacons cannot set
 * headers and text/plain needs no CORS preflight), falling back to fetch with keepalive.
 * Consent: personalization=false asks for baseline content; analytics=false sends no event and no
 * exposure that carries the visitor id (exposures issued under analytics=false are anonymous, and
 * Vary counts them without a visitor, as the API does for such visitors).
 */
(function (root) {
  "use strict";

  var VERSION = "1.0.0";
  var ID_KEY = "vary_vid";
  var SESSION_KEY = "vary_sid";
  var MAX_URL = 2048;
  var CHANNELS = ["web", "ios", "android", "email", "kiosk", "call_center", "store"];

  function randomId() {
    var c = root.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var bytes = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    var hex = "";
    for (var j = 0; j < 16; j++) hex += (bytes[j] + 256).toString(16).slice(1);
    return hex;
  }

  function storage(kind) {
    try {
      var s = root[kind];
      var probe = "__vary__";
      s.setItem(probe, "1");
      s.removeItem(probe);
      return s;
    } catch (e) {
      return null; // disabled, full, or a sandboxed frame
    }
  }

  function readCookie(name) {
    if (typeof document === "undefined") return null;
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    if (typeof document === "undefined") return;
    var secure = root.location && root.location.protocol === "https:" ? "; Secure" : "";
    document.cookie = name + "=" + encodeURIComponent(value) + "; Max-Age=" + maxAge + "; Path=/; SameSite=Lax" + secure;
  }

  function clip(text, max) {
    return typeof text === "string" && text ? text.slice(0, max) : undefined;
  }

  function utmFrom(search) {
    var utm = {};
    try {
      new URLSearchParams(search || "").forEach(function (value, name) {
        if (name.indexOf("utm_") === 0 && value && Object.keys(utm).length < 16) utm[name.slice(4, 68)] = value.slice(0, 256);
      });
    } catch (e) { /* no URLSearchParams: no utm */ }
    return utm;
  }

  function deviceOf(nav) {
    var ua = (nav && nav.userAgent) || "";
    if (/iPad|Tablet/i.test(ua)) return "tablet";
    return /Mobi|Android|iPhone/i.test(ua) ? "mobile" : "desktop";
  }

  function createVary(options) {
    options = options || {};
    if (!options.key) throw new Error("vary: createVary needs the delivery key: createVary({ key: 'vd_...' })");
    var key = String(options.key);
    var base = String(options.baseUrl || "").replace(/\/+$/, "");
    var channel = CHANNELS.indexOf(options.channel) >= 0 ? options.channel : "web";
    var threshold = typeof options.threshold === "number" ? options.threshold : 0.5;
    var state = {
      consent: {
        personalization: !(options.consent && options.consent.personalization === false),
        analytics: !(options.consent && options.consent.analytics === false)
      },
      entries: {},        // entry id -> last served entry (with its exposure token)
      sent: {},           // exposure tokens already sent (a token is sent once per page)
      pending: [],        // tokens seen, not yet sent
      timer: null,
      observed: typeof WeakMap === "function" ? new WeakMap() : null,
      memoryId: null
    };
    var local = storage("localStorage");
    var session = storage("sessionStorage");
    var nav = root.navigator;

    // --- identity -------------------------------------------------------------------------
    function storedId() {
      return (local && local.getItem(ID_KEY)) || readCookie(ID_KEY);
    }
    function keepsId() {
      // An id is kept on the device only with a consent that needs it (personalization or analytics).
      return state.consent.personalization || state.consent.analytics;
    }
    function visitorId() {
      if (!keepsId()) return state.memoryId || (state.memoryId = randomId());
      var id = storedId() || state.memoryId || randomId();
      if (local) local.setItem(ID_KEY, id);
      else writeCookie(ID_KEY, id, 31536000);
      state.memoryId = id;
      return id;
    }
    function forgetId() {
      if (local) local.removeItem(ID_KEY);
      writeCookie(ID_KEY, "", 0);
      state.memoryId = null;
    }
    function sessionId() {
      var id = session && session.getItem(SESSION_KEY);
      if (!id) {
        id = state.sessionId || randomId();
        if (session) session.setItem(SESSION_KEY, id);
      }
      state.sessionId = id;
      return id;
    }

    // --- transport --------------------------------------------------------------------------
    function url(path, withKey) {
      return base + path + (withKey ? "?key=" + encodeURIComponent(key) : "");
    }
    function send(path, payload) {
      var body = JSON.stringify(payload);
      try {
        if (nav && typeof nav.sendBeacon === "function") {
          var blob = new Blob([body], { type: "text/plain;charset=UTF-8" });
          if (nav.sendBeacon(url(path, true), blob)) return true;
        }
      } catch (e) { /* fall through to fetch */ }
      if (typeof fetch === "function") {
        fetch(url(path, false), {
          method: "POST",
          keepalive: true,
          headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
          body: body
        }).catch(function () { /* best effort, like a beacon */ });
        return true;
      }
      return false;
    }

    // --- visitor context --------------------------------------------------------------------
    function context(overrides) {
      var loc = root.location;
      var visitor = {
        id: visitorId(),
        session_id: sessionId(),
        channel: channel,
        locale: clip(nav && nav.language, 35),
        device: deviceOf(nav),
        page: clip(loc && loc.href, MAX_URL),
        referrer: clip(typeof document !== "undefined" ? document.referrer : "", MAX_URL),
        utm: utmFrom(loc && loc.search)
      };
      overrides = overrides || {};
      for (var name in overrides) {
        if (!Object.prototype.hasOwnProperty.call(overrides, name) || overrides[name] === undefined) continue;
        if (name === "utm") visitor.utm = Object.assign({}, visitor.utm, overrides.utm);
        else visitor[name] = overrides[name];
      }
      visitor.consent = { personalization: state.consent.personalization, analytics: state.consent.analytics };
      for (var field in visitor) if (visitor[field] === undefined) delete visitor[field];
      return visitor;
    }

    // --- exposures ----------------------------------------------------------------------------
    function queueExposure(entry) {
      var token = entry && entry.exposure_token;
      if (!token || state.sent[token]) return;
      if (!state.consent.analytics && !entry.__anonymous) return; // it would carry the visitor id
      state.sent[token] = true;
      state.pending.push(token);
      if (state.pending.length >= 50) flush();
      else if (!state.timer) state.timer = setTimeout(flush, 200);
    }

    function flush() {
      if (state.timer) { clearTimeout(state.timer); state.timer = null; }
      if (!state.pending.length) return;
      var tokens = state.pending.splice(0, state.pending.length);
      send("/v1/exposures", { tokens: tokens });
    }

    var observer = null;
    function visible(record) {
      if (!record.isIntersecting) return false;
      if (record.intersectionRatio >= threshold) return true;
      // A component taller than the viewport never reaches the ratio: enough of the screen counts.
      var rootHeight = record.rootBounds ? record.rootBounds.height : (root.innerHeight || 0);
      return rootHeight > 0 && record.intersectionRect.height >= rootHeight * threshold;
    }
    function watcher() {
      if (observer || typeof IntersectionObserver !== "function") return observer;
      observer = new IntersectionObserver(function (records) {
        records.forEach(function (record) {
          if (!visible(record)) return;
          var entry = state.observed && state.observed.get(record.target);
          observer.unobserve(record.target);
          if (state.observed) state.observed.delete(record.target);
          queueExposure(entry);
        });
      }, { threshold: [0, threshold, 1] });
      return observer;
    }

    /** Record the exposure of `entry` (a served entry, or its entry id) once `element` is in view. */
    function observe(element, entry) {
      if (typeof entry === "string") entry = state.entries[entry];
      if (!element || !entry || !entry.exposure_token) return false;
      var io = watcher();
      if (!io || !state.observed) { queueExposure(entry); return true; } // no IntersectionObserver: count now
      state.observed.set(element, entry);
      io.observe(element);
      return true;
    }

    /** Observe every `[data-vary-entry]` element under `scope` whose entry was served. */
    function observeAll(scope) {
      if (typeof document === "undefined") return 0;
      var found = (scope || document).querySelectorAll("[data-vary-entry]");
      var count = 0;
      for (var i = 0; i < found.length; i++) {
        if (observe(found[i], found[i].getAttribute("data-vary-entry"))) count++;
      }
      return count;
    }

    // --- the API ------------------------------------------------------------------------------
    /** Personalized content for `entries` (baseline entry ids); `visitor` adds or overrides context. */
    function personalize(entries, visitor, request) {
      var body = Object.assign({}, request || {}, {
        visitor: context(visitor),
        entries: entries,
        exposures: options.exposures === "auto" ? "auto" : "on_view"
      });
      var anonymous = !body.visitor.consent.analytics;
      return fetch(url("/v1/personalize", false), {
        method: "POST",
        headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (!response.ok) {
            var error = new Error("vary: personalize failed (" + response.status + "): " + (answer.detail || response.statusText));
            error.status = response.status;
            error.body = answer;
            throw error;
          }
          answer.variants = {};
          (answer.entries || []).forEach(function (entry) {
            if (anonymous) Object.defineProperty(entry, "__anonymous", { value: true });
            answer.variants[entry.entry_id] = entry;
            state.entries[entry.entry_id] = entry;
          });
          if (options.autoObserve !== false) {
            if (typeof document !== "undefined" && document.readyState === "loading") {
              document.addEventListener("DOMContentLoaded", function () { observeAll(); }, { once: true });
            } else {
              observeAll();
            }
          }
          return answer;
        });
      });
    }

    /** Send one event (`page_view`, `click`, `conversion`, …) with `fields`; nothing without analytics consent. */
    function track(type, fields) {
      if (!state.consent.analytics) return false;
      var event = { type: type, visitor_id: visitorId(), session_id: sessionId(), channel: channel, event_id: randomId() };
      fields = fields || {};
      for (var name in fields) if (Object.prototype.hasOwnProperty.call(fields, name) && fields[name] !== undefined) event[name] = fields[name];
      return send("/v1/events", { events: [event] });
    }

    function pageView(fields) {
      var loc = root.location;
      return track("page_view", Object.assign({
        page: clip(loc && loc.href, MAX_URL),
        referrer: clip(typeof document !== "undefined" ? document.referrer : "", MAX_URL)
      }, fields || {}));
    }

    /** Set consent flags; returns the current ones. */
    function consent(flags) {
      if (flags) {
        if (typeof flags.personalization === "boolean") state.consent.personalization = flags.personalization;
        if (typeof flags.analytics === "boolean") state.consent.analytics = flags.analytics;
        if (!state.consent.analytics) state.pending = []; // queued under the old consent: never sent
        if (!keepsId()) forgetId();
      }
      return { personalization: state.consent.personalization, analytics: state.consent.analytics };
    }

    /** Start over as a new visitor (a new id; the session too). */
    function reset() {
      forgetId();
      if (session) session.removeItem(SESSION_KEY);
      state.sessionId = null;
      state.entries = {};
    }

    if (typeof document !== "undefined" && typeof root.addEventListener === "function") {
      // Whatever was seen goes out before the page is hidden or left.
      document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") flush(); });
      root.addEventListener("pagehide", flush);
    }

    var api = {
      version: VERSION,
      personalize: personalize,
      observe: observe,
      observeAll: observeAll,
      track: track,
      pageView: pageView,
      consent: consent,
      flush: flush,
      reset: reset,
      visitorId: visitorId,
      sessionId: sessionId
    };

    if (options.autoPageView !== false) {
      // After the page's own scripts had their say (e.g. vary.consent from a consent banner).
      var sendPageView = function () { if (!state.pageViewSent) { state.pageViewSent = true; pageView(); } };
      if (typeof document !== "undefined" && document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", sendPageView, { once: true });
      } else {
        setTimeout(sendPageView, 0);
      }
    }
    return api;
  }

  root.Vary = { createVary: createVary, version: VERSION };

  var script = typeof document !== "undefined" ? document.currentScript : null;
  if (script && script.getAttribute("data-key")) {
    root.vary = createVary({
      key: script.getAttribute("data-key"),
      baseUrl: new URL(script.src, root.location.href).origin,
      channel: script.getAttribute("data-channel") || "web",
      consent: {
        personalization: script.getAttribute("data-consent-personalization") !== "false",
        analytics: script.getAttribute("data-consent-analytics") !== "false"
      }
    });
  }
})(typeof globalThis !== "undefined" ? globalThis : this);
