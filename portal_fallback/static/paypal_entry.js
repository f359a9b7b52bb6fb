"use strict";
// PayPal's button: the payer approves, in PayPal's own window, the vault setup token made for
// this page; we post its id back and keep only the vault id PayPal gives us for it.
(function () {
  const form = document.getElementById("paypal-form");
  if (!form) return;
  const errors = document.getElementById("paypal-errors");
  if (typeof paypal === "undefined") {
    errors.hidden = false;
    return;
  }
  paypal.Buttons({
    createVaultSetupToken: async function () {
      return form.dataset.setupToken;
    },
    onApprove: async function (data) {
      form.elements.payment_method.value = "paypal-setup:" + data.vaultSetupToken;
      form.submit();
    },
    onError: function () {
      errors.hidden = false;
    },
  }).render("#paypal-button");
})();
