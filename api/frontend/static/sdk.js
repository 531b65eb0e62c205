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
 *   createVary({ key: "vd_...", local: true })    // local mode: decided in the page from the signed bundle
 *   vary.survey.after("task", { name: "checkout", success: true }); // then shows the survey it made due
 *
 * Surveys: personalize asks for the survey due now ("surveys": true; options.surveys=false asks for
 * none) and draws it as a small accessible prompt (options.autoSurvey=false: draw it yourself, or call
 * vary.survey.show(answer.survey)). The prompt posts survey_shown, then the answer (a survey or
 * feedback event) or survey_dismissed. Restyle it with --vary-survey-* custom properties or ::part().
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

  // --- survey prompts (issue 24) -------------------------------------------------------------
  // A due survey (from /v1/personalize with "surveys": true, or /v1/surveys/due) is drawn as a small
  // non-modal dialog fixed to the corner of the viewport: it never moves the page (no layout shift),
  // fits a 360 px screen, is answered with native radio buttons (Tab, arrow keys, Enter), closed with
  // Escape or its close button, and lives in a shadow root so the page's CSS cannot break it — only the
  // --vary-survey-* custom properties (which cross the shadow boundary) and ::part() restyle it. Styles
  // go in a constructed stylesheet, which a strict CSP (style-src with a nonce) allows.
  var SURVEY_METRICS = ["nps", "csat", "ces", "sus", "feedback"];
  var SURVEY_SCALES = { nps: [0, 10], csat: [1, 5], ces: [1, 7], sus: [1, 5] };
  var SURVEY_TEXT = {
    submit: "Send",
    close: "Close survey",
    thanks: "Thank you! Your answer was sent.",
    required: "Choose an answer first.",
    requiredAll: "Answer every statement first.",
    requiredText: "Write a few words first.",
    problem: "What was it about? (optional)",
    noProblem: "Choose a topic",
    announce: "A short survey opened: "
  };
  var SURVEY_CSS = [
    ":host{all:initial;display:block;position:fixed;z-index:var(--vary-survey-z,2147483000);",
    "right:var(--vary-survey-offset,.75rem);bottom:var(--vary-survey-offset,.75rem);",
    "width:min(var(--vary-survey-width,22rem),calc(100vw - 2 * var(--vary-survey-offset,.75rem)));",
    "max-height:calc(100vh - 2 * var(--vary-survey-offset,.75rem));contain:layout paint style}",
    ".box{box-sizing:border-box;position:relative;max-height:inherit;overflow:auto;margin:0;padding:1rem;",
    "background:var(--vary-survey-bg,#fff);color:var(--vary-survey-fg,#1b1f24);",
    "border:1px solid var(--vary-survey-border,#aab4c0);border-radius:var(--vary-survey-radius,.75rem);",
    "box-shadow:var(--vary-survey-shadow,0 .5rem 2rem rgba(0,0,0,.22));",
    "font:var(--vary-survey-font,400 1rem/1.4 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif)}",
    ".box:focus{outline:none}.box:focus-visible{outline:3px solid var(--vary-survey-focus,#f0a500)}",
    ".q{margin:0 2.25rem .5rem 0;font-weight:600;font-size:1rem;padding:0}",
    "fieldset{border:0;margin:0 0 .5rem;padding:0;min-width:0}",
    "legend{padding:0;margin:0 2.25rem .5rem 0;font-weight:600}",
    "fieldset.item legend{font-weight:400;font-size:.9375rem;margin-right:0}",
    ".opts{display:grid;grid-template-columns:repeat(var(--vary-survey-n,5),minmax(0,1fr));gap:.25rem}",
    ".opts.dense{gap:.125rem}",
    ".opt{position:relative;display:block;margin:0}",
    ".opt input{position:absolute;inset:0;width:100%;height:100%;margin:0;opacity:0;cursor:pointer}",
    ".opt span{display:flex;align-items:center;justify-content:center;min-height:2.5rem;box-sizing:border-box;",
    "border:1px solid var(--vary-survey-border,#aab4c0);border-radius:var(--vary-survey-option-radius,.375rem);",
    "background:var(--vary-survey-option-bg,transparent);font-weight:600;font-variant-numeric:tabular-nums}",
    ".opt input:checked+span{background:var(--vary-survey-accent,#0b5cad);color:var(--vary-survey-accent-fg,#fff);",
    "border-color:var(--vary-survey-accent,#0b5cad)}",
    ".opt input:focus-visible+span{outline:3px solid var(--vary-survey-focus,#f0a500);outline-offset:1px}",
    ".ends{display:flex;justify-content:space-between;gap:.5rem;margin:.25rem 0 0;font-size:.8125rem;",
    "color:var(--vary-survey-muted,#4a5360)}",
    "label.field{display:block;margin:.5rem 0 .25rem;font-size:.875rem}",
    "textarea,select{box-sizing:border-box;width:100%;font:inherit;color:inherit;background:var(--vary-survey-bg,#fff);",
    "border:1px solid var(--vary-survey-border,#aab4c0);border-radius:.375rem;padding:.4rem}",
    "textarea{min-height:4.5rem;resize:vertical}",
    "textarea:focus-visible,select:focus-visible,button:focus-visible{outline:3px solid var(--vary-survey-focus,#f0a500);",
    "outline-offset:2px}",
    ".send{font:inherit;margin-top:.75rem;min-height:2.5rem;padding:.5rem 1rem;border:0;cursor:pointer;",
    "border-radius:var(--vary-survey-option-radius,.375rem);background:var(--vary-survey-accent,#0b5cad);",
    "color:var(--vary-survey-accent-fg,#fff)}",
    ".close{position:absolute;top:.25rem;right:.25rem;width:2.5rem;height:2.5rem;border:0;border-radius:.375rem;",
    "background:transparent;color:inherit;font:inherit;font-size:1.5rem;line-height:1;cursor:pointer}",
    ".error{margin:.5rem 0 0;color:var(--vary-survey-error,#a3161b);font-size:.875rem}.error:empty{display:none}",
    ".thanks{margin:0;font-weight:600}",
    ".sr{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}"
  ].join("");
  var surveySheet = null;
  var surveyIds = 0;

  /** A prompt as the API answers it, checked enough to draw it; null when it cannot be drawn. */
  function surveyPrompt(prompt) {
    if (!prompt || typeof prompt.key !== "string" || !prompt.key) return null;
    if (SURVEY_METRICS.indexOf(prompt.metric) < 0 || typeof prompt.question !== "string") return null;
    var scale = SURVEY_SCALES[prompt.metric];
    var low = typeof prompt.scale_min === "number" ? prompt.scale_min : scale && scale[0];
    var high = typeof prompt.scale_max === "number" ? prompt.scale_max : scale && scale[1];
    if (scale && !(high > low && high - low <= 10)) return null;
    if (prompt.metric === "sus" && (!prompt.items || prompt.items.length !== 10)) return null;
    return Object.assign({}, prompt, { scale_min: low, scale_max: high });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) {
      if (attrs[name] === undefined || attrs[name] === null || attrs[name] === false) continue;
      if (name === "text") node.textContent = attrs[name];
      else node.setAttribute(name, attrs[name] === true ? "" : String(attrs[name]));
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  /**
   * The survey part of one kit. `kit` gives it what it needs of createVary: options, `event(type, fields)`
   * (sends one event; false without analytics consent), `flush()` (pending exposures), `analytics()`,
   * `post(path, body)` (a fetch with the key, resolving to the JSON answer), `postEvent(type, fields)`
   * (one event by fetch, resolving once Vary took it) and `context(visitor)`.
   */
  function createSurveys(kit) {
    var options = kit.options;
    var words = Object.assign({}, SURVEY_TEXT, options.surveyText || {});
    var current = null;
    var asked = {}; // survey keys shown on this page: one showing per page, whatever asks again

    function base(prompt) {
      return { survey: prompt.key, metric: prompt.metric, touchpoint: prompt.touchpoint || options.touchpoint || undefined };
    }
    function tell(phase, prompt, extra) {
      var detail = Object.assign({ phase: phase, survey: prompt.key, metric: prompt.metric, prompt: prompt }, extra || {});
      if (typeof options.onSurvey === "function") {
        try { options.onSurvey(detail); } catch (e) { /* the app's callback must not break the kit */ }
      }
      if (typeof document !== "undefined" && typeof CustomEvent === "function") {
        document.dispatchEvent(new CustomEvent("vary:survey", { detail: detail }));
      }
    }

    function styleRoot(shadow) {
      try {
        if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet === "function") {
          if (!surveySheet) { surveySheet = new CSSStyleSheet(); surveySheet.replaceSync(SURVEY_CSS); }
          shadow.adoptedStyleSheets = [surveySheet];
          return;
        }
      } catch (e) { /* no constructable stylesheets: a <style> element below */ }
      shadow.appendChild(el("style", { nonce: options.nonce, text: SURVEY_CSS }));
    }

    function scale(prompt, name, legendText, legendId, item, withEnds) {
      var low = prompt.scale_min, high = prompt.scale_max, n = high - low + 1;
      var opts = el("div", { "class": "opts" + (n > 7 ? " dense" : ""), part: "scale" });
      opts.style.setProperty("--vary-survey-n", String(n)); // CSSOM, which a CSP allows
      for (var v = low; v <= high; v++) {
        var label = String(v);
        if (v === low && prompt.low_label) label += ", " + prompt.low_label;
        if (v === high && prompt.high_label) label += ", " + prompt.high_label;
        opts.appendChild(el("label", { "class": "opt", part: "option" }, [
          el("input", { type: "radio", name: name, value: String(v), "aria-label": label }),
          el("span", { "aria-hidden": "true", text: String(v) })
        ]));
      }
      var legend = el("legend", { id: legendId, text: legendText });
      var ends = withEnds && (prompt.low_label || prompt.high_label) ? el("p", { "class": "ends", part: "labels", "aria-hidden": "true" }, [
        el("span", { text: prompt.low_label || "" }), el("span", { text: prompt.high_label || "" })
      ]) : null;
      return el("fieldset", { "class": item ? "item" : "scale" }, [legend, opts, ends]);
    }

    function picked(form, name) {
      var checked = form.querySelector("input[name='" + name + "']:checked");
      return checked ? Number(checked.value) : null;
    }

    function draw(prompt, id) {
      var form = el("form", { "class": "form", novalidate: true });
      var labelId = id + "-q";
      if (prompt.metric === "sus") {
        form.appendChild(el("p", { "class": "q", id: labelId, text: prompt.question }));
        prompt.items.forEach(function (statement, i) {
          // The end labels once, under the first statement (each radio's name still carries them).
          form.appendChild(scale(prompt, "a" + i, (i + 1) + ". " + statement, id + "-i" + i, true, i === 0));
        });
      } else if (prompt.metric === "feedback") {
        form.appendChild(el("label", { "class": "q", id: labelId, "for": id + "-text", text: prompt.question }));
        form.appendChild(el("textarea", { id: id + "-text", name: "text", maxlength: 4000, rows: 3 }));
        if (prompt.problem_tags && prompt.problem_tags.length) {
          var select = el("select", { id: id + "-problem", name: "problem" }, [el("option", { value: "", text: words.noProblem })]);
          prompt.problem_tags.forEach(function (tag) { select.appendChild(el("option", { value: tag, text: tag })); });
          form.appendChild(el("label", { "class": "field", "for": id + "-problem", text: words.problem }));
          form.appendChild(select);
        }
      } else {
        form.appendChild(scale(prompt, "score", prompt.question, labelId, false, true));
      }
      form.appendChild(el("p", { "class": "error", id: id + "-error", role: "alert" }));
      form.appendChild(el("button", { type: "submit", "class": "send", part: "submit", text: words.submit }));
      var close = el("button", { type: "button", "class": "close", part: "close", "aria-label": words.close, text: "\u00d7" });
      var box = el("div", {
        "class": "box", part: "box", role: "dialog", "aria-modal": "false", "aria-labelledby": labelId,
        tabindex: "-1", "data-survey": prompt.key, "data-metric": prompt.metric
      }, [form, close]); // the close button last: Tab reaches the answer first
      return { box: box, form: form, close: close };
    }

    function answerOf(prompt, form) {
      if (prompt.metric === "sus") {
        var answers = [];
        for (var i = 0; i < 10; i++) answers.push(picked(form, "a" + i));
        return answers.indexOf(null) >= 0 ? { error: words.requiredAll } : { fields: { answers: answers } };
      }
      if (prompt.metric === "feedback") {
        var text = (form.elements.text.value || "").trim();
        var problem = form.elements.problem ? form.elements.problem.value : "";
        return text ? { fields: { text: text.slice(0, 4000), problem: problem || undefined } } : { error: words.requiredText };
      }
      var score = picked(form, "score");
      return score === null ? { error: words.required } : { fields: { score: score } };
    }

    function finish(outcome, extra) {
      var open = current;
      if (!open) return;
      current = null;
      document.removeEventListener("keydown", open.onDocumentKey, true);
      var hadFocus = open.host.contains(document.activeElement) || open.host === document.activeElement;
      var remove = function () {
        if (open.host.parentNode) open.host.parentNode.removeChild(open.host);
        if (hadFocus && open.returnFocus && typeof open.returnFocus.focus === "function" && open.returnFocus.isConnected) {
          open.returnFocus.focus();
        }
      };
      if (outcome === "answered") {
        open.box.replaceChildren(el("p", { "class": "thanks", role: "status", text: words.thanks }));
        if (hadFocus) open.box.focus();
        open.timer = setTimeout(remove, typeof options.surveyThanksMs === "number" ? options.surveyThanksMs : 2500);
      } else {
        remove();
      }
      open.resolve(Object.assign({ outcome: outcome, survey: open.prompt.key }, extra || {}));
    }

    /** Post survey_dismissed and close the open prompt (what Escape and the close button do). */
    function dismiss() {
      if (!current) return false;
      var prompt = current.prompt;
      kit.event("survey_dismissed", base(prompt));
      tell("dismissed", prompt);
      finish("dismissed");
      return true;
    }

    function render(prompt, showOptions) {
      var id = "vary-survey-" + (++surveyIds);
      var host = el("div", { "class": "vary-survey", "data-vary-survey": prompt.key });
      var shadow = typeof host.attachShadow === "function" ? host.attachShadow({ mode: "open" }) : host;
      styleRoot(shadow);
      var parts = draw(prompt, id);
      var live = el("p", { "class": "sr", role: "status", "aria-live": "polite" });
      shadow.appendChild(parts.box);
      shadow.appendChild(live);
      var returnFocus = document.activeElement;
      var promise = new Promise(function (resolve) {
        current = { prompt: prompt, host: host, box: parts.box, resolve: resolve, returnFocus: returnFocus };
      });
      parts.box.addEventListener("keydown", function (e) {
        if (e.key === "Escape" || e.key === "Esc") { e.preventDefault(); e.stopPropagation(); dismiss(); return; }
        // Enter on a radio button sends the answer (browsers differ on implicit submission from radios).
        if (e.key === "Enter" && e.target && e.target.type === "radio") { e.preventDefault(); submit(); }
      });
      // Escape also closes it while nothing else on the page has focus (the prompt did not take it).
      current.onDocumentKey = function (e) {
        var active = document.activeElement;
        if ((e.key === "Escape" || e.key === "Esc") && (!active || active === document.body)) dismiss();
      };
      document.addEventListener("keydown", current.onDocumentKey, true);
      parts.close.addEventListener("click", dismiss);
      var sent = false;
      function submit() {
        if (sent || !current || current.host !== host) return;
        var answer = answerOf(prompt, parts.form);
        var error = parts.form.querySelector(".error");
        if (answer.error) { error.textContent = answer.error; return; }
        sent = true;
        kit.flush(); // the exposures in view go out first: the answer joins the variant that was seen
        var type = prompt.metric === "feedback" ? "feedback" : "survey";
        var fields = Object.assign(base(prompt), answer.fields);
        if (type === "feedback") delete fields.metric; // a feedback event has no metric
        kit.event(type, fields);
        tell("answered", prompt, answer.fields);
        finish("answered", answer.fields);
      }
      parts.form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
      parts.form.addEventListener("change", function () { parts.form.querySelector(".error").textContent = ""; });
      (options.surveyContainer || document.body).appendChild(host);
      kit.event("survey_shown", base(prompt));
      tell("shown", prompt);
      if (showOptions.focus === false || options.surveyFocus === false) {
        live.textContent = words.announce + prompt.question; // announced without moving focus
      } else {
        parts.box.focus({ preventScroll: true });
      }
      return promise;
    }

    function whenReady(run) {
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run, { once: true });
      else run();
    }

    /**
     * Show a due survey (`answer.survey` of personalize, or of /v1/surveys/due). Resolves to
     * `{outcome: "answered" | "dismissed" | "skipped", survey, ...answer}`. Skipped: no document, no
     * analytics consent (the answer could not be recorded), a prompt already open, this survey already
     * shown on this page, or a prompt that cannot be drawn.
     */
    function show(raw, showOptions) {
      showOptions = showOptions || {};
      var prompt = surveyPrompt(raw);
      var key = raw && raw.key;
      if (typeof document === "undefined" || !prompt || !kit.analytics() || current || asked[prompt.key]) {
        return Promise.resolve({ outcome: "skipped", survey: key || null });
      }
      asked[prompt.key] = true;
      if (prompt.trigger === "exit_intent" && !showOptions.now) {
        // Held until the pointer leaves through the top of the window (towards the tabs or the address bar).
        return new Promise(function (resolve) {
          var onOut = function (e) {
            if (e.relatedTarget || e.clientY > 0) return;
            document.removeEventListener("mouseout", onOut);
            render(prompt, showOptions).then(resolve);
          };
          document.addEventListener("mouseout", onOut);
        });
      }
      return new Promise(function (resolve) { whenReady(function () { render(prompt, showOptions).then(resolve); }); });
    }

    /** The survey due for this visitor now (POST /v1/surveys/due), shown unless autoSurvey is false. */
    function due(visitor, request) {
      var body = Object.assign({}, request || {}, { visitor: kit.context(visitor) });
      return kit.post("/v1/surveys/due", body).then(function (answer) {
        var prompt = answer && answer.survey ? answer.survey : null;
        if (prompt && options.autoSurvey !== false) show(prompt);
        return prompt;
      });
    }

    /**
     * Send an event that may make a survey due (a task done, an order placed) and then ask for it: the
     * event is posted and acknowledged first (not a beacon), so Vary knows of it when it decides.
     */
    function after(type, fields, visitor) {
      if (!kit.analytics()) return Promise.resolve(null);
      return kit.postEvent(type, fields).then(function () { return due(visitor); });
    }

    return {
      show: show,
      due: due,
      after: after,
      dismiss: dismiss,
      get open() { return current ? current.prompt : null; },
      maybeShow: function (answer) {
        if (answer && answer.survey && options.autoSurvey !== false) show(answer.survey);
      }
    };
  }

  // --- local mode (issue 25) -----------------------------------------------------------------
  // createVary({ key, local: true }) decides in the page instead of asking POST /v1/personalize: it
  // imports the local-evaluation SDK from the Vary that served this kit (/v1/sdk-local.mjs, the file
  // sdk/js/src/index.js; no npm), loads the signed bundle once (GET /v1/bundle?fields=true in the
  // page's locale), verifies its Ed25519 signature (options.publicKey pinned, else GET /v1/bundle/key),
  // and answers personalize() from it in the remote mode's shape (entries, variants[...], segments).
  // Exposures are the SDK's local decisions (POST /v1/exposures {"decisions": [...]}, beaconed), sent
  // when a [data-vary-entry] component is seen, as in the remote mode. The visitor's profile is the
  // one the SDK keeps on this device (frequency caps count per device). Entries the bundle marks
  // server_only (a plugin's experience type) are asked of the server. If the bundle cannot be loaded
  // or verified, personalize() asks the server instead (options.localFallback=false: it rejects).
  var LOCAL_MODULE = "/v1/sdk-local.mjs";
  var SCRIPT_ORIGIN = (function () {
    try {
      var current = typeof document !== "undefined" ? document.currentScript : null;
      return current && current.src ? new URL(current.src, root.location.href).origin : "";
    } catch (e) {
      return "";
    }
  })();

  function createLocalMode(kit) {
    var options = kit.options;
    var origin = kit.base || SCRIPT_ORIGIN || (root.location ? root.location.origin : "");
    var loading = null;       // Promise of the SDK's client over the verified bundle
    var client = null;
    var mine = typeof WeakSet === "function" ? new WeakSet() : null; // entries decided here
    var exposed = {};         // exposure ids already handed to the SDK

    function getJson(path) {
      return fetch(origin + path, { headers: { "Authorization": "Bearer " + kit.key } }).then(function (response) {
        if (!response.ok) throw new Error("vary: GET " + path + " failed (" + response.status + ")");
        return response.json();
      });
    }

    function load() {
      if (loading) return loading;
      var locale = options.locale || (root.navigator && root.navigator.language) || null;
      loading = Promise.all([
        import(/* webpackIgnore: true */ options.localModule || origin + LOCAL_MODULE),
        options.publicKey ? { public_key: options.publicKey } : getJson("/v1/bundle/key")
      ]).then(function (parts) {
        return parts[0].Vary.load({
          endpoint: origin,
          key: kit.key,
          publicKey: parts[1].public_key,
          locale: locale,
          fields: true,
          decryptionKey: options.decryptionKey || null,
          exposures: "manual",   // sent when seen, like the remote mode's tokens
          flushDelayMs: 200,
          onError: function () { /* exposures are best effort, like beacons */ }
        });
      }).then(function (loaded) {
        client = loaded;
        return loaded;
      });
      loading.catch(function () { loading = null; }); // the next personalize() tries again
      return loading;
    }

    function owns(entry) {
      return !!(entry && mine && mine.has(entry));
    }

    function personalize(entries, visitor, request) {
      var asked = kit.context(visitor);
      return load().then(function (local) {
        var answer = local.decide(asked, entries, { exposures: "manual" });
        Object.defineProperty(answer, "local", { value: true });
        answer.entries.forEach(function (entry) { if (mine) mine.add(entry); });
        // exposures: "auto" (as in the remote mode): every entry decided counts now, seen or not.
        if (options.exposures === "auto") answer.entries.forEach(function (e) { if (!e.server_only) expose(e); });
        var serverOnly = answer.entries.filter(function (e) { return e.server_only; }).map(function (e) { return e.entry_id; });
        if (!serverOnly.length) return kit.adopt(answer, false);
        return kit.remote(serverOnly, visitor, request).then(function (remote) {
          answer.entries = answer.entries.map(function (e) { return e.server_only ? remote.variants[e.entry_id] || e : e; });
          return kit.adopt(answer, false);
        });
      }, function (error) {
        if (options.localFallback === false) throw error;
        if (root.console) root.console.warn("vary: local mode unavailable, asking the server:", error && error.message);
        return kit.remote(entries, visitor, request);
      });
    }

    function expose(entry) {
      if (!client || exposed[entry.exposure_id]) return;
      exposed[entry.exposure_id] = true;
      client.expose(entry);
    }

    function flush() {
      if (client) client.flush().catch(function () { /* best effort */ });
    }

    /** Keep the device's profile as the server's events would (visits, page views, goals, history). */
    function track(type, fields) {
      fields = fields || {};
      var args = {
        visitorId: kit.visitorId(),
        sessionId: kit.sessionId(),
        channel: kit.channel,
        url: fields.page || (type === "page_view" && root.location ? root.location.href : null),
        goal: fields.goal || null,
        name: fields.name || null
      };
      load().then(function (local) { local.track(type, args); }, function () { /* no bundle: no profile */ });
    }

    function forget(id) {
      if (id) load().then(function (local) { local.forget(id); }, function () { /* nothing kept */ });
    }

    return { load: load, personalize: personalize, owns: owns, expose: expose, flush: flush, track: track, forget: forget };
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
      if (localMode && localMode.owns(entry)) { localMode.expose(entry); return; } // a local decision
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
      if (localMode) localMode.flush();
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
      if (!element || !entry || !(entry.exposure_token || (localMode && localMode.owns(entry)))) return false;
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
      return localMode ? localMode.personalize(entries, visitor, request) : remotePersonalize(entries, visitor, request);
    }

    /** The answer of POST /v1/personalize (the remote mode, the default). */
    function remotePersonalize(entries, visitor, request) {
      var body = Object.assign({}, request || {}, {
        visitor: context(visitor),
        entries: entries,
        exposures: options.exposures === "auto" ? "auto" : "on_view"
      });
      // Ask for the survey due now beside the entries (options.surveys: false asks for none).
      if (body.surveys === undefined && options.surveys !== false) body.surveys = true;
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
          return adopt(answer, anonymous);
        });
      });
    }

    /** `page.variants[...]`, the entries remembered for observe(), components watched, the survey drawn. */
    function adopt(answer, anonymous) {
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
      survey.maybeShow(answer); // drawn unless options.autoSurvey is false (then: vary.survey.show)
      return answer;
    }

    function eventOf(type, fields) {
      var event = { type: type, visitor_id: visitorId(), session_id: sessionId(), channel: channel, event_id: randomId() };
      fields = fields || {};
      for (var name in fields) if (Object.prototype.hasOwnProperty.call(fields, name) && fields[name] !== undefined) event[name] = fields[name];
      return event;
    }

    /** Send one event (`page_view`, `click`, `conversion`, …) with `fields`; nothing without analytics consent. */
    function track(type, fields) {
      if (!state.consent.analytics) return false;
      if (localMode && state.consent.personalization) localMode.track(type, fields); // the device's profile
      return send("/v1/events", { events: [eventOf(type, fields)] });
    }

    /** POST `body` to `path` with the key (fetch); resolves to the JSON answer, rejects on an error status. */
    function postJson(path, body, what) {
      return fetch(url(path, false), {
        method: "POST",
        headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (!response.ok) {
            var error = new Error("vary: " + what + " failed (" + response.status + "): " + (answer.detail || response.statusText));
            error.status = response.status;
            error.body = answer;
            throw error;
          }
          // Rejected items read in either vocabulary: `key`/`message` (a 4xx's `extra`) or the older `field`/`reason`.
          (answer.rejected || []).forEach(function (r) {
            if (r.key === undefined) r.key = path === "/v1/exposures" ? "tokens[" + r.index + "]" : "events[" + r.index + "]." + r.field;
            if (r.message === undefined) r.message = r.reason;
            if (typeof console !== "undefined") console.warn("vary: " + what + " rejected at " + r.key + ": " + r.message);
          });
          return answer;
        });
      });
    }

    var survey = createSurveys({
      options: options,
      event: track,
      flush: function () { flush(); },
      analytics: function () { return state.consent.analytics; },
      context: context,
      post: function (path, body) { return postJson(path, body, "surveys/due"); },
      postEvent: function (type, fields) { return postJson("/v1/events", { events: [eventOf(type, fields)] }, "event"); }
    });

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
        if (!keepsId()) {
          if (localMode) localMode.forget(state.memoryId || storedId()); // the profile kept on this device
          forgetId();
        }
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

    // Local mode (options.local): decisions from the signed bundle, in this page (see createLocalMode).
    var localMode = options.local ? createLocalMode({
      options: options, key: key, base: base, channel: channel, context: context, visitorId: visitorId,
      sessionId: sessionId, remote: remotePersonalize, adopt: adopt
    }) : null;
    if (localMode) localMode.load(); // start fetching the module, the key and the bundle now

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
      sessionId: sessionId,
      survey: survey
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
      local: script.getAttribute("data-local") === "true", // local mode (issue 25)
      consent: {
        personalization: script.getAttribute("data-consent-personalization") !== "false",
        analytics: script.getAttribute("data-consent-analytics") !== "false"
      }
    });
  }
})(typeof globalThis !== "undefined" ? globalThis : this);
