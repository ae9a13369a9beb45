/* maint: reload the maintenance page once the application answers again.
 *
 * Served as a file of the page image (the page's CSP allows scripts from 'self' only, never
 * inline). The <script> tag carries the planned end in data-end. Until then nothing happens;
 * after it, the page's own URL is fetched with capped exponential backoff and jitter, and the
 * page reloads as soon as the answer is not maint's 503 page. Without JavaScript the page's
 * text and its Retry-After header still say when to come back.
 */
(function (root) {
  "use strict";

  var MARKER = "X-Maint-Page";
  var BASE_MS = 5000; // first retry after the end: up to 5 s (jittered)
  var CAP_MS = 120000; // never wait more than 2 minutes between checks after the end
  var MAX_TIMER_MS = 3600000; // long waits are split: a sleeping laptop must not oversleep

  // The answer is maint's page while it carries the marker; gateway errors (502, 503, 504
  // without the marker) mean the app is not there yet either. Anything else is the app.
  function shouldReload(status, marker) {
    if (marker !== null && marker !== undefined && marker !== "") {
      return false;
    }
    return status !== 502 && status !== 503 && status !== 504;
  }

  // Equal jitter: half the capped exponential delay, plus a random part of the other half.
  function backoff(attempt, random) {
    var ceiling = Math.min(CAP_MS, BASE_MS * Math.pow(2, Math.max(0, attempt)));
    return Math.round(ceiling / 2 + random() * (ceiling / 2));
  }

  // How long to wait before the next check. Before the planned end: until the end plus a
  // jittered moment (so readers do not all ask at once), in slices of at most an hour.
  // A Retry-After later than the backoff (an extended window) is honoured too.
  function nextDelay(now, end, attempt, retryAfter, random) {
    var wait;
    if (now < end) {
      wait = end - now + Math.round(random() * BASE_MS);
    } else {
      wait = backoff(attempt, random);
      if (retryAfter !== null && !isNaN(retryAfter) && retryAfter > now) {
        wait = Math.max(wait, retryAfter - now + Math.round(random() * BASE_MS));
      }
    }
    return Math.min(wait, MAX_TIMER_MS);
  }

  function parseDate(text) {
    if (text === null || text === undefined || text === "") {
      return null;
    }
    var value = Date.parse(text);
    return isNaN(value) ? null : value;
  }

  // env: {end, url, now(), fetch(url, init), setTimeout(fn, ms), reload(), random()}
  function watch(env) {
    var attempt = 0;
    var retryAfter = null;

    function schedule() {
      var now = env.now();
      var delay = nextDelay(now, env.end, attempt, retryAfter, env.random);
      env.setTimeout(check, delay);
    }

    function check() {
      if (env.now() < env.end) {
        schedule();
        return;
      }
      env
        .fetch(env.url, { cache: "no-store", credentials: "same-origin" })
        .then(function (response) {
          if (shouldReload(response.status, response.headers.get(MARKER))) {
            env.reload();
            return;
          }
          retryAfter = parseDate(response.headers.get("Retry-After"));
          attempt += 1;
          schedule();
        })
        .catch(function () {
          attempt += 1; // network error: the app is not reachable yet
          schedule();
        });
    }

    schedule();
  }

  var api = { shouldReload: shouldReload, backoff: backoff, nextDelay: nextDelay, watch: watch };
  if (typeof module === "object" && module.exports) {
    module.exports = api; // node, for the unit tests
    return;
  }
  var script = root.document && root.document.currentScript;
  var end = script ? parseDate(script.getAttribute("data-end")) : null;
  if (end === null || typeof root.fetch !== "function") {
    return;
  }
  watch({
    end: end,
    url: root.location.href,
    now: function () {
      return Date.now();
    },
    fetch: function (url, init) {
      return root.fetch(url, init);
    },
    setTimeout: function (fn, ms) {
      return root.setTimeout(fn, ms);
    },
    reload: function () {
      root.location.reload();
    },
    random: Math.random,
  });
})(typeof window === "object" ? window : this);
