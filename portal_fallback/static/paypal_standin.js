"use strict";
// Stand-in for PayPal's JS SDK where no PayPal credentials are set (the demo, a sandbox):
// its button "approves" at once, as a payer would in PayPal's window. Never used in production.
window.paypal = {
  Buttons: function (options) {
    return {
      render: async function (target) {
        const box = typeof target === "string" ? document.querySelector(target) : target;
        const button = document.createElement("button");
        button.type = "button";
        button.className = "secondary paypal-standin";
        button.textContent = "PayPal (test)";
        button.addEventListener("click", async function () {
          button.disabled = true;
          const token = await options.createVaultSetupToken();
          await options.onApprove({ vaultSetupToken: token });
        });
        box.appendChild(button);
      },
    };
  },
};
