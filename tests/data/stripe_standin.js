"use strict";
// A stand-in for Stripe.js in browser tests: exactly what portal_fallback/static/card.js calls,
// for cards and for bank accounts (us_bank_account), which localstripe's Stripe.js lacks.
// Nothing leaves the page. Every call is recorded on window.stripeStandIn.calls so a test can
// check what card.js passed (the client secret, the billing name and email), and kept in the
// tab's sessionStorage ("stripeStandIn") so it can still be read after card.js posted the form.
// The bank flow resolves with pm_usBankAccount and the card flow with pm_card_visa: the
// sandbox gateway's test methods (bot/providers/sandbox_gateway.py, SandboxGateway.TEST_METHODS).
// A test may set window.stripeStandIn.bankOutcome before the customer adds a bank account:
//   "verified" (default)  the customer picks a bank and signs in: instantly verified
//   "canceled"            the customer closes Stripe's bank modal
//   "microdeposits"       the customer types the numbers by hand: Stripe verifies them with
//                         small deposits over the next days (the method is not usable yet)
(function () {
  const STORE = "stripeStandIn";
  const before = JSON.parse(sessionStorage.getItem(STORE) || '{"keys": [], "calls": []}');
  const record = { keys: before.keys, calls: before.calls, bankOutcome: "verified" };
  window.stripeStandIn = record;

  function keep() {
    sessionStorage.setItem(STORE, JSON.stringify({ keys: record.keys, calls: record.calls }));
  }

  function note(method, args) {
    // A deep copy without the card element (a DOM-holding object): what was passed, as data.
    record.calls.push({
      method: method,
      args: JSON.parse(JSON.stringify(args, (k, v) => (k === "card" ? "[card element]" : v))),
    });
    keep();
  }

  function secretProblem(secret) {
    if (typeof secret !== "string" || !/^seti_\w+_secret_\w+$/.test(secret)) {
      return { error: { type: "invalid_request_error", message: "No such setup intent." } };
    }
    return null;
  }

  function settle(value) {
    // Stripe's promises resolve after the current task, never synchronously.
    return new Promise((resolve) => setTimeout(() => resolve(value), 0));
  }

  window.Stripe = function (key) {
    if (typeof key !== "string" || !key.startsWith("pk_")) {
      throw new Error("Stripe(): a publishable key (pk_...) is required");
    }
    record.keys.push(key);
    keep();
    return {
      elements: function () {
        note("elements", []);
        return {
          create: function (type) {
            note("elements.create", [type]);
            if (type !== "card") throw new Error("stand-in: only the card element exists");
            return {
              mount: function (selector) {
                note("card.mount", [selector]);
                const host = document.querySelector(selector);
                if (!host) throw new Error("stand-in: nothing to mount on at " + selector);
                const field = document.createElement("input");
                field.placeholder = "Card number";
                field.setAttribute("aria-label", "Card number");
                host.appendChild(field);
              },
            };
          },
        };
      },
      confirmCardSetup: function (clientSecret, data) {
        note("confirmCardSetup", [clientSecret, data]);
        return settle(
          secretProblem(clientSecret) || {
            setupIntent: { status: "succeeded", payment_method: "pm_card_visa" },
          },
        );
      },
      collectBankAccountForSetup: function (options) {
        note("collectBankAccountForSetup", [options]);
        const secret = options && options.clientSecret;
        const params = (options && options.params) || {};
        const billing = (params.payment_method_data || {}).billing_details || {};
        if (params.payment_method_type !== "us_bank_account" || !billing.name) {
          // Stripe refuses a bank account without the account holder's name.
          return settle({
            error: { type: "invalid_request_error", message: "billing_details[name] is required." },
          });
        }
        // Stripe's modal would open here; the customer picks "Test Bank ... 6789", or closes it.
        const canceled = record.bankOutcome === "canceled";
        return settle(
          secretProblem(secret) || {
            setupIntent: canceled
              ? { status: "requires_payment_method", payment_method: null }
              : { status: "requires_confirmation", payment_method: "pm_usBankAccount" },
          },
        );
      },
      confirmUsBankAccountSetup: function (clientSecret, data) {
        note("confirmUsBankAccountSetup", data === undefined ? [clientSecret] : [clientSecret, data]);
        const microdeposits = {
          status: "requires_action",
          payment_method: "pm_usBankAccount",
          next_action: { type: "verify_with_microdeposits" },
        };
        return settle(
          secretProblem(clientSecret) || {
            setupIntent:
              record.bankOutcome === "microdeposits"
                ? microdeposits
                : { status: "succeeded", payment_method: "pm_usBankAccount" },
          },
        );
      },
    };
  };
})();
